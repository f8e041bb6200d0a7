"""``rcnn-kit release``, ``rcnn-kit bundle`` and ``rcnn-kit submit``.

Registered through the ``rcnn_kit.commands`` entry-point group (see
docs/ARCHITECTURE.md): :func:`register` adds the three sub-parsers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rcnn_kit.handin import DEFAULT_IMPORT_TIMEOUT_S, NOTEBOOK_NAME, SubmissionError, make_submission
from release_tool.student_bundle import DEFAULT_BUNDLE, build_student_bundle
from release_tool.markers import MarkerError
from release_tool.release import ReleaseError, check_release, write_release

#: Exit code when the command could not do its work (bad input, stale release).
EXIT_FAILURE = 1
#: Default name of the submission zip.
DEFAULT_SUBMISSION = "submission.zip"


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


def run_submit(args: argparse.Namespace) -> int:
    """Check the student's package and write the submission zip."""
    folder = Path(args.folder)
    notebook = None if args.no_notebook else Path(args.notebook) if args.notebook else folder / NOTEBOOK_NAME
    if notebook is not None and not notebook.is_file():
        if args.notebook:
            return _error("submit", f"--notebook: {notebook} does not exist")
        print(f"note: no {notebook} found; submitting the package without the notebook.")
        notebook = None
    try:
        out = make_submission(folder, args.output, notebook=notebook, timeout_s=args.timeout)
    except (SubmissionError, FileNotFoundError) as exc:
        return _error("submit", str(exc))
    print(f"wrote {out}: upload this file.")
    return 0


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``release``, ``bundle`` and ``submit`` sub-parsers."""
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

    submit = subparsers.add_parser(
        "submit",
        help="check your faster_rcnn/ package and zip it for the autograder",
        description="Check that every faster_rcnn/*.py file is present, parses and imports, then zip it "
        "(with the executed notebook when present).",
    )
    submit.add_argument("folder", nargs="?", default=".", help="folder holding faster_rcnn/ (default: .)")
    submit.add_argument("--output", default=DEFAULT_SUBMISSION, help=f"zip to write (default: {DEFAULT_SUBMISSION})")
    submit.add_argument(
        "--notebook", default=None, help=f"notebook to include (default: FOLDER/{NOTEBOOK_NAME} if present)"
    )
    submit.add_argument("--no-notebook", action="store_true", help="submit the package without the notebook")
    submit.add_argument(
        "--timeout", type=float, default=DEFAULT_IMPORT_TIMEOUT_S, help="seconds allowed for the import check"
    )
    submit.set_defaults(func=run_submit)
