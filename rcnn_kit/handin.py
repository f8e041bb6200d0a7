"""The submission zip a student hands in (the notebook's last cell and ``rcnn-kit submit``).

:func:`make_submission` checks that every ``faster_rcnn/*.py`` file is present,
parses and imports (in a separate Python process, so a broken or hanging module
never takes the notebook down), then zips the six modules and, when given, the
executed notebook, in the layout the autograder accepts.

:func:`notebook_location_warnings` looks for the usual way a notebook gets left
out: the student runs a "Copy of faster_rcnn.ipynb" (Colab's "Save a copy in
Drive" puts it in "My Drive/Colab Notebooks") while the folder keeps the untouched
original. Colab does not reliably tell a kernel which file it runs, so the checks
are on files: the expected notebook exists, was saved during this session, and no
"Copy of faster_rcnn*.ipynb" lies in the folder or the usual Drive places.
"""

from __future__ import annotations

import datetime
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Sequence

from rcnn_kit.course import PACKAGE_NAME, STUDENT_MODULES

#: Seconds the import check of a submission may take (importing torch is most of it).
DEFAULT_IMPORT_TIMEOUT_S = 120.0
#: Name of the package folder inside the student's folder and inside the zip.
PACKAGE_DIR = PACKAGE_NAME
#: Name of the notebook inside the student's folder and inside the zip.
NOTEBOOK_NAME = f"{PACKAGE_NAME}.ipynb"
#: The student's folder: the bundle's top-level folder and the notebook's default
#: ``DRIVE_FOLDER`` (a folder of that name directly in "My Drive").
STUDENT_FOLDER_NAME = "faster_rcnn_assignment"
#: Default name of the submission zip.
DEFAULT_SUBMISSION = "submission.zip"
#: Prefix Colab's "Save a copy in Drive" and Drive's "Make a copy" put before a notebook's name.
COPY_PREFIX = "Copy of "


class SubmissionError(ValueError):
    """The student's package is not ready to submit; the message lists every problem."""


def _import_problem(folder: Path, timeout_s: float) -> str | None:
    """Import the package in ``folder/faster_rcnn`` in a fresh Python process.

    Returns:
        None when every module imports, else a message naming the failing module.
    """
    modules = ", ".join(repr(m) for m in STUDENT_MODULES)
    script = (
        "import importlib, sys\n"
        f"sys.path.insert(0, {str(folder)!r})\n"
        f"pkg = importlib.import_module({PACKAGE_DIR!r})\n"
        f"for name in ({modules},):\n"
        "    try:\n"
        f"        importlib.import_module({PACKAGE_DIR!r} + '.' + name)\n"
        "    except BaseException as exc:\n"
        f"        message = f'{PACKAGE_DIR}/{{name}}.py does not import: {{type(exc).__name__}}: {{exc}}'\n"
        "        print(message, file=sys.stderr)\n"
        "        sys.exit(1)\n"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", script],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"importing {PACKAGE_DIR} took longer than {timeout_s:.0f} s (code running at import time?)"
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        return lines[-1] if lines else f"importing {PACKAGE_DIR} failed with exit code {proc.returncode}"
    return None


def find_submission_problems(folder: str | Path, timeout_s: float = DEFAULT_IMPORT_TIMEOUT_S) -> list[str]:
    """Everything that would stop the autograder from loading the package.

    Args:
        folder: the student's folder, holding ``faster_rcnn/iou.py`` and the other modules.
        timeout_s: limit for the import check.

    Returns:
        One message per problem (missing file, syntax error with file:line,
        import failure); empty when the package is ready.

    Raises:
        FileNotFoundError: ``folder`` is not a directory.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"folder: {root} is not a directory")
    problems: list[str] = []
    for module in STUDENT_MODULES:
        path = root / PACKAGE_DIR / f"{module}.py"
        if not path.is_file():
            problems.append(f"{PACKAGE_DIR}/{module}.py is missing from {root}")
            continue
        try:
            # compile() also catches what ast.parse lets through (e.g. a misplaced __future__ import).
            compile(path.read_text(encoding="utf-8"), str(path), "exec", dont_inherit=True)
        except SyntaxError as exc:
            problems.append(f"{PACKAGE_DIR}/{module}.py:{exc.lineno}: syntax error: {exc.msg}")
        except UnicodeDecodeError as exc:
            problems.append(f"{PACKAGE_DIR}/{module}.py is not UTF-8 text: {exc.reason}")
    if not problems:
        problem = _import_problem(root.resolve(), timeout_s)
        if problem is not None:
            problems.append(problem)
    return problems


def write_submission_zip(folder: str | Path, output: str | Path, notebook: str | Path | None = None) -> Path:
    """Zip the six modules (and the notebook) without checking them; see :func:`make_submission`.

    Raises:
        FileNotFoundError: a module, ``notebook`` or the output's folder is missing.
    """
    root = Path(folder)
    nb_path = None if notebook is None else Path(notebook)
    if nb_path is not None and not nb_path.is_file():
        raise FileNotFoundError(f"notebook: {nb_path} does not exist")
    out = Path(output)
    if not out.parent.is_dir():
        raise FileNotFoundError(f"output: folder {out.parent} does not exist")
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for module in STUDENT_MODULES:
            archive.write(root / PACKAGE_DIR / f"{module}.py", f"{PACKAGE_DIR}/{module}.py")
        if nb_path is not None:
            archive.write(nb_path, NOTEBOOK_NAME)
    return out


def make_submission(
    folder: str | Path,
    output: str | Path,
    notebook: str | Path | None = None,
    timeout_s: float = DEFAULT_IMPORT_TIMEOUT_S,
) -> Path:
    """Check the student's package, then write the submission zip.

    Unfinished functions (still raising ``NotImplementedError``) do not stop it:
    callers list them first (:func:`rcnn_kit.unfinished.find_unfinished`).

    Args:
        folder: the student's folder holding ``faster_rcnn/``.
        output: path of the zip to write (its folder must exist).
        notebook: the executed assignment notebook to include, if any.
        timeout_s: limit for the import check.

    Returns:
        The path of the written zip: ``faster_rcnn/<module>.py`` for the six
        modules, plus ``faster_rcnn.ipynb`` when ``notebook`` is given.

    Raises:
        FileNotFoundError: ``folder``, ``notebook`` or the output's folder is missing.
        SubmissionError: a module is missing, does not parse or does not import.
    """
    problems = find_submission_problems(folder, timeout_s)
    if problems:
        raise SubmissionError(format_problems(problems))
    return write_submission_zip(folder, output, notebook)


def format_problems(problems: Sequence[str]) -> str:
    """The message of a :class:`SubmissionError`: every problem on its own line."""
    return "cannot submit yet:\n  - " + "\n  - ".join(problems)


def notebook_location_warnings(
    folder: str | Path,
    search_dirs: Sequence[str | Path] = (),
    session_start: float | None = None,
    notebook_name: str = NOTEBOOK_NAME,
) -> list[str]:
    """Reasons to believe the notebook being run is not the one the submission will hold.

    Args:
        folder: the student's folder (holding ``faster_rcnn/`` and, normally, the notebook).
        search_dirs: more folders to look in for copies (``"Copy of faster_rcnn*.ipynb"``; Colab:
            "My Drive" and "My Drive/Colab Notebooks"); missing ones are skipped.
        session_start: POSIX time at which this session began (the notebook's setup
            cell); a notebook last saved before it was not saved during this session.
        notebook_name: the notebook expected in ``folder``.

    Returns:
        One message per finding, each naming the file and what to do; empty when all looks right.
    """
    root = Path(folder)
    expected = root / notebook_name
    warnings: list[str] = []
    if not expected.is_file():
        warnings.append(
            f"{expected} does not exist, so the submission will not include your notebook: "
            f"save the notebook you ran as {notebook_name} in {root}"
        )
    elif session_start is not None and expected.stat().st_mtime < session_start:
        saved = datetime.datetime.fromtimestamp(expected.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
        warnings.append(
            f"{expected} was last saved at {saved}, before this session started: save it now "
            "(File > Save; Drive may need a minute) and run this cell again. If you are running a copy "
            f"of the notebook, move that copy to {root} and rename it {notebook_name}, replacing the old one"
        )
    seen: set[Path] = set()
    pattern = f"{COPY_PREFIX}{Path(notebook_name).stem}*.ipynb"  # also "Copy of faster_rcnn (1).ipynb"
    for directory in (root, *(Path(d) for d in search_dirs)):
        if not directory.is_dir():
            continue
        for copy in sorted(directory.glob(pattern)):
            if copy.resolve() in seen:
                continue
            seen.add(copy.resolve())
            warnings.append(
                f"found {copy}: if that is the notebook you ran, move it to {root} and rename it "
                f"{notebook_name} (replacing the old one); only {expected} is submitted"
            )
    return warnings
