"""`python -m rules check|test|list|stats|publish|rollback|backtest ...`: the rules commands alone, without
the imports of the whole `bukong` command (web server, simulator): the same commands, a faster start."""

from __future__ import annotations

import argparse
import sys

from rules.cli import add_arguments, run


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m rules", description="rule engineering (docs/rules.md)")
    add_arguments(ap)
    return run(ap.parse_args())


if __name__ == "__main__":
    sys.exit(main())
