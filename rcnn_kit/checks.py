"""Student-side checks: notebook sanity checks and the submission zip.

Two things a student runs from the assignment notebook (or ``rcnn-kit submit``):

- :func:`check` compares a result with the expected value using the course's
  relative error (:func:`rel_error`) and prints ``PASS`` or ``FAIL`` with a hint
  instead of stopping at a bare ``assert``; :func:`require_all` turns a cell's
  failures into one readable error (so nbgrader scores the cell).
- :func:`make_submission` checks that every ``faster_rcnn/*.py`` file is
  present, parses and imports (in a separate Python process, so a broken or
  hanging module never takes the notebook down), then zips the six modules and,
  when given, the executed notebook, in the layout the autograder accepts.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from rcnn_kit.impl import STUDENT_MODULES

#: Relative error the course accepts for float results unless a check says otherwise.
DEFAULT_TOL = 1e-6
#: Keeps :func:`rel_error` finite when both inputs are all zeros.
_REL_ERROR_EPS = 1e-12
#: Seconds the import check of a submission may take (importing torch is most of it).
DEFAULT_IMPORT_TIMEOUT_S = 120.0
#: Name of the package folder inside the student's folder and inside the zip.
PACKAGE_DIR = "faster_rcnn"
#: Name of the notebook inside the zip.
NOTEBOOK_NAME = "faster_rcnn.ipynb"

ArrayLike = torch.Tensor | np.ndarray | float | int | Sequence[float]


def _as_float_array(value: ArrayLike, what: str) -> np.ndarray:
    """Any tensor / array / number / nested list as a float64 numpy array."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", torch.float64).numpy()
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what}: expected a tensor, array or number, got {type(value).__name__}") from exc


def rel_error(x: ArrayLike, y: ArrayLike) -> float:
    """The course's relative error ``max|x - y| / (max|x| + max|y|)``.

    Args:
        x: tensor, array or number.
        y: same shape as ``x``.

    Returns:
        A float in [0, 1]; 0 means identical. Two all-zero inputs give 0.

    Raises:
        ValueError: the shapes differ.
    """
    a, b = _as_float_array(x, "x"), _as_float_array(y, "y")
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ, x {a.shape} vs y {b.shape}")
    if a.size == 0:
        return 0.0
    numerator = float(np.max(np.abs(a - b)))
    denominator = float(np.max(np.abs(a)) + np.max(np.abs(b)))
    return numerator / max(denominator, _REL_ERROR_EPS)


def check(name: str, actual: ArrayLike, expected: ArrayLike, tol: float = DEFAULT_TOL, hint: str = "") -> bool:
    """Print ``PASS``/``FAIL`` for one sanity check and return whether it passed.

    Args:
        name: what is checked, e.g. ``"anchors p5, ratio 1:2"``.
        actual: the student's result (tensor, array or number).
        expected: the expected value, same shape.
        tol: largest accepted :func:`rel_error`.
        hint: printed on failure: what to look at.

    Returns:
        True when the shapes agree and the relative error is at most ``tol``.
    """
    got, want = _as_float_array(actual, "actual"), _as_float_array(expected, "expected")
    if got.shape != want.shape:
        print(f"FAIL  {name}: shape {tuple(got.shape)}, expected {tuple(want.shape)}")
        if hint:
            print(f"      hint: {hint}")
        return False
    if not np.all(np.isfinite(got)):
        print(f"FAIL  {name}: result contains NaN or inf")
        if hint:
            print(f"      hint: {hint}")
        return False
    error = rel_error(got, want)
    if error <= tol:
        print(f"PASS  {name}: relative error {error:.2e}")
        return True
    print(f"FAIL  {name}: relative error {error:.2e} > {tol:.0e}")
    if hint:
        print(f"      hint: {hint}")
    return False


def require_all(section: str, results: Sequence[bool]) -> None:
    """Raise one readable error when any check of a notebook section failed.

    Args:
        section: shown in the message, e.g. ``"IoU"``.
        results: the return values of :func:`check`.

    Raises:
        AssertionError: naming the section and how many checks failed (graded
            notebook cells fail this way; the PASS/FAIL lines above say which).
    """
    failed = sum(1 for ok in results if not ok)
    if failed:
        raise AssertionError(f"{section}: {failed} of {len(results)} checks FAILED; see the hints printed above")
    print(f"All {len(results)} {section} checks passed.")


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


def make_submission(
    folder: str | Path,
    output: str | Path,
    notebook: str | Path | None = None,
    timeout_s: float = DEFAULT_IMPORT_TIMEOUT_S,
) -> Path:
    """Check the student's package, then write the submission zip.

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
        SubmissionError: the package is incomplete, does not parse or does not import.
    """
    root = Path(folder)
    problems = find_submission_problems(root, timeout_s)
    if problems:
        raise SubmissionError("cannot submit yet:\n  - " + "\n  - ".join(problems))
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
