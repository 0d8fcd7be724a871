"""Test-wide settings."""

import torch

# The test models are tiny: one intra-op thread is as fast, and it avoids the heavy
# slowdown of oversubscribed OpenMP threads on a busy 2-core machine.
torch.set_num_threads(1)
