"""``python -m cpd.cli`` runs the ``cpd`` command."""

import sys

from cpd.cli.main import main

sys.exit(main())
