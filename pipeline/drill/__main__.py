"""`python -m pipeline.drill`: the drill suite (options: --help)."""

import sys

from pipeline.drill.cli import main

sys.exit(main())
