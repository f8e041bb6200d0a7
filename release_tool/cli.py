"""``rcnn-kit release`` and ``rcnn-kit bundle``.

Registered through the ``rcnn_kit.commands`` entry-point group (see
docs/ARCHITECTURE.md): :func:`register` adds the two sub-parsers. ``rcnn-kit submit``
is a runtime command (:mod:`rcnn_kit.submit_command`): the student bundle has no
release_tool.
"""

from __future__ import annotations

import argparse
import sys

from release_tool.student_bundle import DEFAULT_BUNDLE, build_student_bundle
from release_tool.markers import MarkerError
from release_tool.release import ReleaseError, check_release, write_release

#: Exit code when the command could not do its work (bad input, stale release).
EXIT_FAILURE = 1


def _error(command: str, message: str) -> int:
    print(f"rcnn-kit {command}: error: {message}", file=sys.stderr)
    return EXIT_FAILURE


def run_release(args: argparse.Namespace) -> int:
    """Write ``assignments/`` (or, with ``--check``, report how it differs)."""
    try:
        if args.check:
            problems = check_release(args.root)
            if problems:
                print("assignments/ is out of date with solutions/ (run `rcnn-kit release`):", file=sys.stderr)
                for line in problems:
                    print(f"  {line}", file=sys.stderr)
                return EXIT_FAILURE
            print("assignments/ is up to date with solutions/.")
            return 0
        changed = write_release(args.root)
    except (ReleaseError, MarkerError, FileNotFoundError) as exc:
        return _error("release", str(exc))
    for line in changed:
        print(f"wrote {line}")
    print(f"assignments/ regenerated ({len(changed)} file(s) changed).")
    return 0


def run_bundle(args: argparse.Namespace) -> int:
    """Write the student bundle zip."""
    try:
        out = build_student_bundle(args.root, args.output)
    except (ReleaseError, MarkerError, FileNotFoundError) as exc:
        return _error("bundle", str(exc))
    print(f"wrote {out}")
    return 0


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``release`` and ``bundle`` sub-parsers."""
    release = subparsers.add_parser(
        "release",
        help="regenerate assignments/ (student stubs + notebook) from solutions/",
        description="Regenerate assignments/ from the reference in solutions/; with --check, only compare.",
    )
    release.add_argument("--root", default=".", help="repository root holding solutions/ (default: .)")
    release.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 naming the files when assignments/ is stale"
    )
    release.set_defaults(func=run_release)

    bundle = subparsers.add_parser(
        "bundle",
        help="zip what students receive (stubs, notebook, runtime, data helper)",
        description="Write the student bundle zip.",
    )
    bundle.add_argument("--root", default=".", help="repository root (default: .)")
    bundle.add_argument("--output", default=None, help=f"zip to write (default: <root>/{DEFAULT_BUNDLE})")
    bundle.set_defaults(func=run_bundle)
