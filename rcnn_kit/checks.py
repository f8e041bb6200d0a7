"""Notebook sanity checks a student runs from the assignment notebook.

:func:`check` compares a result with the expected value using the course's
relative error (:func:`rel_error`) and prints ``PASS`` or ``FAIL`` with a hint
instead of stopping at a bare ``assert``; :func:`require_all` turns a cell's
failures into one readable error (so nbgrader scores the cell). The submission
zip lives in :mod:`rcnn_kit.handin`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

#: Relative error the course accepts for float results unless a check says otherwise.
DEFAULT_TOL = 1e-6
#: Keeps :func:`rel_error` finite when both inputs are all zeros.
_REL_ERROR_EPS = 1e-12

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
