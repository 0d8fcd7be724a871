"""The ``cpd`` command line: one module per subcommand (demo, run, comb, prune, bench,
export, eval, report).

Entry point: :func:`cpd.cli.main.main` (console script ``cpd``, or
``python -m cpd.cli``).
"""
