"""`python -m pipeline.apps.drill`: the drill suite (options: --help)."""

import sys

from pipeline.apps.drill.cli import main

sys.exit(main())
