"""Say *which property* of a student's output is wrong, in words a student understands.

Used by :mod:`autograder.compare` when no known mistake (:mod:`autograder.feedback`)
matches: rather than only "relative error above tolerance", the message says whether the
shape has an extra dimension, the dtype changed, the values are in another order, scaled,
shifted, or wrong only in some rows or columns (and which kind of rows: foreground,
background, neutral). Everything said is a relation between the student's output and the
expected one (counts, column names, directions), never an expected or hidden value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

#: Relative tolerance when testing a property (same order, constant factor, ...).
PROPERTY_TOL = 1e-4


def shape_difference(actual: Sequence[int], expected: Sequence[int]) -> str | None:
    """What differs between two shapes, or None when nothing specific can be said."""
    actual, expected = tuple(actual), tuple(expected)
    if actual == expected:
        return None
    if actual == expected + (1,):
        return "it has an extra trailing dimension of size 1 (reshape it away or squeeze(-1))"
    if actual + (1,) == expected:
        return "a trailing dimension of size 1 is missing"
    if len(actual) != len(expected):
        return f"it has {len(actual)} dimensions instead of {len(expected)}"
    if sorted(actual) == sorted(expected) and actual != expected:
        return "its dimensions are in another order (a missing or wrong permute/transpose)"
    differing = [i for i, (a, e) in enumerate(zip(actual, expected)) if a != e]
    if len(differing) == 1:
        return f"dimension {differing[0]} has the wrong size"
    return None


def dtype_advice(actual: torch.dtype, expected: torch.dtype) -> str | None:
    """How to get the expected dtype, or None."""
    if actual.is_floating_point and expected.is_floating_point:
        return (
            "keep the inputs' dtype (float64 in, float64 out): do not call .float() or create tensors "
            "with a fixed dtype; use new_zeros, zeros_like or dtype=boxes.dtype"
        )
    if expected == torch.int64 and not actual.is_floating_point:
        return "indices and class ids are int64 (torch.long)"
    if expected == torch.int64 and actual.is_floating_point:
        return "indices and class ids are integers (int64), not floating-point numbers"
    return None


def _close(x: Tensor, y: Tensor) -> bool:
    """``x`` and ``y`` (float64, same shape) agree within :data:`PROPERTY_TOL` relative to their scale."""
    scale = max(float(x.abs().max()), float(y.abs().max()), 1e-12) if x.numel() else 1.0
    return bool(((x - y).abs() <= PROPERTY_TOL * scale).all())


def _rows_that_differ(actual: Tensor, expected: Tensor, tol: float) -> Tensor:
    """Tensor[R] bool: rows (first dimension) where the values differ by more than ``tol`` of the scale."""
    scale = max(float(actual.abs().max()), float(expected.abs().max()), 1e-12)
    diff = (actual - expected).abs() > tol * scale
    return diff.reshape(diff.shape[0], -1).any(dim=1)


def value_difference(
    actual: Tensor,
    expected: Tensor,
    *,
    tol: float,
    columns: Sequence[str] | None = None,
    row_groups: Mapping[str, Tensor] | None = None,
) -> str:
    """One phrase saying how the values of ``actual`` differ from ``expected`` (same shape, finite).

    Args:
        actual: the student's output.
        expected: the reference output.
        tol: the check's tolerance (relative to the largest magnitude).
        columns: names of the last dimension's entries (e.g. ``("x1", "y1", "x2", "y2")``).
        row_groups: ``{name: Tensor[R] bool}`` kinds of rows (e.g. foreground / background).
    """
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    if a.dim() == 0 or a.numel() == 1:
        av, ev = float(a), float(e)
        if av == 0.0:
            return "the value is 0"
        if (av > 0) != (ev > 0) and ev != 0.0:
            return "the value has the wrong sign"
        return "the value is too large" if abs(av) > abs(ev) else "the value is too small"
    if _close(torch.sort(a.flatten()).values, torch.sort(e.flatten()).values):
        return "the right values in another order (check the order or a permute/reshape)"
    if _close(a, -e):
        return "every value has the wrong sign"
    nonzero = e.abs() > PROPERTY_TOL * float(e.abs().max())
    if bool(nonzero.any()):
        ratio = a[nonzero] / e[nonzero]
        if _close(ratio, torch.full_like(ratio, float(ratio.mean()))) and _close(a[~nonzero], e[~nonzero]):
            return "every value is off by the same factor (a scale or normalisation)"
    if _close(a - e, torch.full_like(a, float((a - e).mean()))):
        return "every value is off by the same amount (an offset)"
    parts = []
    if a.dim() >= 1 and a.shape[0] > 1:
        rows = _rows_that_differ(a, e, tol)
        n, total = int(rows.sum()), rows.numel()
        parts.append(f"{n} of {total} rows differ" if n < total else "every row differs")
        if row_groups:
            wrong_kinds = [name for name, mask in row_groups.items() if bool((rows & mask.cpu()).any())]
            right_kinds = [name for name, mask in row_groups.items() if bool(mask.any()) and name not in wrong_kinds]
            if wrong_kinds and right_kinds:
                parts.append(f"only {' and '.join(wrong_kinds)} rows are wrong")
    if columns is not None and a.dim() >= 2 and a.shape[-1] == len(columns):
        scale = max(float(a.abs().max()), float(e.abs().max()), 1e-12)
        cols = ((a - e).abs() > tol * scale).reshape(-1, a.shape[-1]).any(dim=0)
        wrong = [name for name, bad in zip(columns, cols.tolist()) if bad]
        if 0 < len(wrong) < len(columns):
            several = len(wrong) > 1
            parts.append(f"only column{'s' if several else ''} {', '.join(wrong)} {'are' if several else 'is'} wrong")
    return "; ".join(parts) if parts else "the values differ"


def nonfinite_rows(actual: Tensor) -> str:
    """Where NaN or inf appear: ``"in 2 of 20 rows"`` (or of the elements for 0-d/1-d outputs)."""
    bad = ~torch.isfinite(actual.detach().double().cpu())
    if bad.dim() >= 2:
        rows = bad.reshape(bad.shape[0], -1).any(dim=1)
        return f"in {int(rows.sum())} of {rows.numel()} rows"
    return f"in {int(bad.sum())} of {bad.numel()} values"
