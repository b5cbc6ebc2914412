import sys

from pipeline.apps.cli import main

sys.exit(main())
