"""The full Comb, Prune, Distill pipeline on top of the stages and the trainer."""

from cpd.pipeline.prune_callback import PruneDuringTraining
from cpd.pipeline.run import CPDResult, run_cpd

__all__ = ["CPDResult", "PruneDuringTraining", "run_cpd"]
