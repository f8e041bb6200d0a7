"""``rcnn-kit submit`` (also ``python -m rcnn_kit submit``): check the package and write the zip.

A runtime command, not a plugin: the student bundle holds ``rcnn_kit`` but is not
pip-installed, so no entry point registers anything there; the runtime's CLI adds
this sub-command itself.

Before zipping it lists the functions that still raise ``NotImplementedError``
(:func:`rcnn_kit.unfinished.find_unfinished`). On a terminal it asks whether to
submit anyway; without a terminal (a script, CI) it refuses unless
``--allow-incomplete`` is given.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from rcnn_kit.handin import (
    DEFAULT_IMPORT_TIMEOUT_S,
    DEFAULT_SUBMISSION,
    NOTEBOOK_NAME,
    find_submission_problems,
    format_problems,
    notebook_location_warnings,
    write_submission_zip,
)
from rcnn_kit.unfinished import find_unfinished, format_unfinished

#: Exit status when nothing was written (a problem in the package, a refusal, a bad option).
EXIT_FAILURE = 1
#: Answers to the confirmation prompt that mean "yes".
_YES = frozenset({"y", "yes"})


def _error(prog: str, message: str) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return EXIT_FAILURE


def confirm_incomplete(
    prog: str, allow: bool, is_interactive: bool, ask: Callable[[str], str] | None = None
) -> bool:
    """Whether to go on although functions are unfinished.

    Args:
        prog: the command as typed (``python -m rcnn_kit submit``), for the message.
        allow: ``--allow-incomplete`` was given.
        is_interactive: stdin is a terminal, so a question can be answered.
        ask: reads the answer (default: the built-in ``input``).

    Returns:
        True to submit anyway.
    """
    if allow:
        print("--allow-incomplete: submitting anyway; the autograder gives no points for the parts that raise.")
        return True
    if not is_interactive:
        print(f"Not submitted. Finish them, or run `{prog} --allow-incomplete` to submit anyway.", file=sys.stderr)
        return False
    try:
        answer = (ask or input)("Submit anyway? [y/N] ")
    except EOFError:
        answer = ""
    if answer.strip().lower() in _YES:
        return True
    print("Not submitted.", file=sys.stderr)
    return False


def run_submit(args: argparse.Namespace) -> int:
    """Check the student's package, ask about unfinished functions, write the submission zip."""
    prog = args.submit_prog
    folder = Path(args.folder)
    if not folder.is_dir():
        return _error(prog, f"FOLDER: {folder} is not a directory")
    notebook = None if args.no_notebook else Path(args.notebook) if args.notebook else folder / NOTEBOOK_NAME
    if notebook is not None and not notebook.is_file():
        if args.notebook:
            return _error(prog, f"--notebook: {notebook} does not exist")
        print(f"note: no {notebook} found; submitting the package without the notebook.")
        notebook = None
    if notebook is not None and not args.notebook:
        for warning in notebook_location_warnings(folder):
            print(f"warning: {warning}")
    unfinished = find_unfinished(folder)  # quick (nothing imported): ask before the slow import check
    if unfinished:
        print(format_unfinished(unfinished), file=sys.stderr)
        if not confirm_incomplete(prog, args.allow_incomplete, sys.stdin is not None and sys.stdin.isatty()):
            return EXIT_FAILURE
    problems = find_submission_problems(folder, args.timeout)
    if problems:
        return _error(prog, format_problems(problems))
    try:
        out = write_submission_zip(folder, args.output, notebook)
    except FileNotFoundError as exc:
        return _error(prog, str(exc))
    print(f"wrote {out}: upload this file.")
    return 0


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``submit`` sub-parser."""
    submit = subparsers.add_parser(
        "submit",
        help="check your faster_rcnn/ package and zip it for the autograder",
        description="Check that every faster_rcnn/*.py file is present, parses and imports, list the functions "
        "that still raise NotImplementedError, then zip the package (with the notebook when present).",
    )
    submit.add_argument("folder", nargs="?", default=".", metavar="FOLDER",
                        help="folder holding faster_rcnn/ (default: the current folder)")
    submit.add_argument("--output", default=DEFAULT_SUBMISSION, help=f"zip to write (default: {DEFAULT_SUBMISSION})")
    submit.add_argument("--notebook", default=None,
                        help=f"notebook to include (default: FOLDER/{NOTEBOOK_NAME} if present)")
    submit.add_argument("--no-notebook", action="store_true", help="submit the package without the notebook")
    submit.add_argument("--allow-incomplete", action="store_true",
                        help="submit even if functions still raise NotImplementedError (no question asked)")
    submit.add_argument("--timeout", type=float, default=DEFAULT_IMPORT_TIMEOUT_S,
                        help=f"seconds allowed for the import check (default: {DEFAULT_IMPORT_TIMEOUT_S:.0f})")
    submit.set_defaults(func=run_submit, submit_prog=submit.prog)
