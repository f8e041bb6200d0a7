"""Shared pieces of the bug signatures: the signature type, matching tolerances, helpers.

A signature is a function ``(actual, expected, inputs) -> str | None``:

- ``actual``: the student's output (CPU tensor, usually of the same shape as ``expected``);
- ``expected``: the reference output for the same inputs;
- ``inputs``: the hidden inputs (never printed; used only to recompute a buggy variant).

It returns a hint (the cause and the fix, one sentence, no hidden values) when the
student's output is what the buggy variant would give, else None. All boxes are XYXY
float pixels without the +1 convention.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

# IGNORED_DELTA: deltas of rows that must not contribute (background or neutral GT); DELTA_SCALE_CLAMP:
# the largest dw, dh before exp() in rcnn_apply_deltas_to_anchors. Re-exported for the signatures.
from rcnn_kit.course import DELTA_SCALE_CLAMP, IGNORED_DELTA

from autograder.compare import rel_error

#: Signature detector type: (student output, reference output, inputs) -> hint or None.
Signature = Callable[[Tensor, Tensor, Mapping[str, Tensor]], "str | None"]

#: Relative error under which a recomputed buggy variant counts as a match.
SIGNATURE_TOL = 1e-4



def matches(candidate: Tensor, actual: Tensor, tol: float = SIGNATURE_TOL) -> bool:
    """True when ``candidate`` (a recomputed buggy variant) equals ``actual`` closely.

    Integer and bool tensors must be equal; floating ones within ``tol`` relative error
    (NaN in the same places counts as equal, so that a NaN-producing bug can be matched).
    """
    if candidate.shape != actual.shape:
        return False
    if not (candidate.is_floating_point() or actual.is_floating_point()):
        return bool((candidate.long() == actual.long()).all())
    candidate, actual = candidate.double(), actual.double()
    nan_c, nan_a = torch.isnan(candidate), torch.isnan(actual)
    if not torch.equal(nan_c, nan_a):
        return False
    if nan_c.any():
        candidate, actual = candidate[~nan_c], actual[~nan_a]
    return rel_error(candidate, actual) <= tol


def same_indices(a: Tensor, b: Tensor) -> bool:
    """True when two index tensors hold the same elements in the same order."""
    return a.shape == b.shape and bool((a.long() == b.long()).all())


def first_hint(
    signatures: Sequence[Signature], actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]
) -> str | None:
    """The hint of the first signature in ``signatures`` that matches, or None."""
    for signature in signatures:
        hint = signature(actual, expected, inputs)
        if hint is not None:
            return hint
    return None


def box_wh(boxes: Tensor) -> tuple[Tensor, Tensor]:
    """Widths and heights (each Tensor[N]) of Tensor[N, 4] XYXY boxes."""
    return boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]


def same_rows_as_set(actual: Tensor, expected: Tensor) -> bool:
    """True when both Tensor[R, D] hold the same rows in some order (values compared on a fine grid)."""
    if actual.shape != expected.shape or actual.dim() != 2 or actual.numel() == 0:
        return False
    scale = max(float(actual.abs().max()), float(expected.abs().max()), 1.0)

    def sorted_keys(t: Tensor) -> Tensor:
        keys = torch.round(t.double() / scale / SIGNATURE_TOL).long()  # (R, D) integers
        for col in reversed(range(keys.shape[1])):  # lexicographic sort, column 0 most significant
            keys = keys[torch.argsort(keys[:, col], stable=True)]
        return keys

    return torch.equal(sorted_keys(actual), sorted_keys(expected))


def join_hints(hints: Sequence[str]) -> str:
    """One sentence naming several causes: ``"A; and B"``."""
    return "; and ".join(hints)
