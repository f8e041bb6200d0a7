"""The ``rcnn-kit`` command line.

The runtime owns ``train``, ``eval`` and ``demo`` (see :mod:`rcnn_kit.commands`).
The layers above it (data scripts, release tool, autograder) contribute their
own subcommands through the ``rcnn_kit.commands`` entry-point group declared in
pyproject.toml, so this module never imports them.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points
from typing import Callable, Sequence

ENTRY_POINT_GROUP = "rcnn_kit.commands"

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def _plugin_registrars() -> list[tuple[str, Register]]:
    """Load every ``register(subparsers)`` function declared under the entry-point group.

    A plugin that fails to import is reported on stderr and left out, so one
    broken layer (say, the autograder in a student bundle) never takes the
    other commands down with it.
    """
    found = []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            found.append((ep.name, ep.load()))
        except Exception as exc:  # any import-time error of a plugin module
            print(
                f"rcnn-kit: commands from {ep.value!r} are unavailable: {type(exc).__name__}: {exc}",
                file=sys.stderr,
            )
    return found


def build_parser() -> argparse.ArgumentParser:
    """The full parser: runtime commands plus every registered plugin's commands."""
    from rcnn_kit import commands  # runtime's own train/eval/demo

    parser = argparse.ArgumentParser(
        prog="rcnn-kit",
        description="Faster R-CNN course kit: train/evaluate the detector, prepare data, "
        "generate the student release, grade submissions.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    commands.register(sub)
    for _name, register in _plugin_registrars():
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
