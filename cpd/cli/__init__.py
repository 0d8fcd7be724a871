"""The ``cpd`` command line: one module per subcommand (comb, prune, bench, export).

Entry point: :func:`cpd.cli.main.main` (console script ``cpd``, or
``python -m cpd.cli``).
"""
