"""``python -m autograder grade|grade-all|autograder-zip``: the autograder's commands alone.

Same commands and flags as ``rcnn-kit``; used by Gradescope's ``run_autograder`` (it grades
with the bundled source) and by ``grade-all`` for each submission (it skips loading the
other layers' sub-commands).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from autograder.cli import register


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m autograder", description="Faster R-CNN course autograder")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    register(sub)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
