"""The ``rcnn-kit`` command line (also ``python -m rcnn_kit``).

The runtime owns ``train``, ``eval`` and ``demo`` (see :mod:`rcnn_kit.commands`) and
``submit`` (:mod:`rcnn_kit.submit_command`: the student bundle is not installed, so
it cannot come from an entry point). The layers above it (data scripts, release
tool, autograder) contribute their own subcommands through the ``rcnn_kit.commands``
entry-point group declared in pyproject.toml, so this module never imports them.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points
from typing import Callable, Sequence

ENTRY_POINT_GROUP = "rcnn_kit.commands"
#: The program name in usage texts: the installed script, or the module run with ``python -m``.
SCRIPT_PROG = "rcnn-kit"
MODULE_PROG = "python -m rcnn_kit"

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


def _register_plugin(name: str, register: Register, sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Run one plugin's ``register``; a command name it shares with another is reported and left out."""
    try:
        register(sub)
    except argparse.ArgumentError as exc:  # e.g. an older plugin that still adds `submit`
        print(f"rcnn-kit: some commands of plugin {name!r} are unavailable: {exc}", file=sys.stderr)


def build_parser(prog: str = SCRIPT_PROG) -> argparse.ArgumentParser:
    """The full parser: runtime commands plus every registered plugin's commands.

    Args:
        prog: the program name shown in usage texts (:data:`SCRIPT_PROG` or :data:`MODULE_PROG`).
    """
    from rcnn_kit import commands, submit_command  # the runtime's own commands

    parser = argparse.ArgumentParser(
        prog=prog,
        description="Faster R-CNN course kit: train/evaluate the detector, prepare data, "
        "generate the student release, grade submissions, submit your work.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    commands.register(sub)
    submit_command.register(sub)
    for name, register in _plugin_registrars():
        _register_plugin(name, register, sub)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = SCRIPT_PROG) -> int:
    """Run the CLI; returns the process exit code.

    Args:
        argv: arguments without the program name (default: ``sys.argv[1:]``).
        prog: the program name for usage texts (``python -m rcnn_kit`` passes :data:`MODULE_PROG`).
    """
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
