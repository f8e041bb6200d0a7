"""Student-facing explanations of failed hidden checks: known mistakes and their hints.

A hidden check that finds a difference raises :class:`autograder.compare.Fail`; its first
line is what the student sees. When the difference matches a known mistake, the message
names it (cause and fix, one sentence); otherwise it says which property failed
(:mod:`autograder.describe`). Messages never contain hidden inputs or expected values.

Modules by topic:

- :mod:`.core`: the signature type, matching tolerances, shared helpers;
- :mod:`.boxes`: ``iou`` and ``nms`` (formulas recomputed on the hidden inputs);
- :mod:`.grid`: location coordinates and anchors (combinations of known transforms);
- :mod:`.deltas`: encoding and decoding deltas (combinations of formula mistakes);
- :mod:`.variants`: module-level mistakes (RPN, detector) found by re-running the check's
  probe on named buggy edits of the reference (``variants.toml``);
- :mod:`.static_scan`: source scans (library box ops, hand-written random samplers).
"""

from __future__ import annotations

from autograder.compare import Fail
from autograder.feedback.boxes import (
    IOU_SIGNATURES, NMS_SIGNATURES, iou_nan_on_zero_union, iou_out_of_range, iou_plus_one,
    iou_union_keeps_intersection, nms_ignores_scores, nms_properties, nms_sorted_positions,
    nms_threshold_boundary, nms_unordered,
)
from autograder.feedback.core import DELTA_SCALE_CLAMP, IGNORED_DELTA, SIGNATURE_TOL, Signature, first_hint
from autograder.feedback.deltas import (
    DELTAS_APPLY_SIGNATURES, DELTAS_GET_SIGNATURES, deltas_apply_corners, deltas_apply_no_clamp,
    deltas_decode_combined, deltas_encode_combined, deltas_from_corners, deltas_ignored_rows, deltas_log_inverted,
)
from autograder.feedback.grid import (
    ANCHOR_SIGNATURES, COORDS_SIGNATURES, anchors_combined, anchors_order, anchors_wh_swapped, anchors_wrong_size,
    coords_combined, coords_not_centred, coords_order, coords_xy_swapped,
)
from autograder.feedback.static_scan import find_library_box_ops, find_random_sampling
from autograder.feedback.variants import VariantHints, load_variants, variants_for

__all__ = [
    "ANCHOR_SIGNATURES", "COORDS_SIGNATURES", "DELTAS_APPLY_SIGNATURES", "DELTAS_GET_SIGNATURES",
    "DELTA_SCALE_CLAMP", "IGNORED_DELTA", "IOU_SIGNATURES", "NMS_SIGNATURES", "SIGNATURE_TOL",
    "Fail", "Signature", "VariantHints",
    "anchors_combined", "anchors_order", "anchors_wh_swapped", "anchors_wrong_size",
    "coords_combined", "coords_not_centred", "coords_order", "coords_xy_swapped",
    "deltas_apply_corners", "deltas_apply_no_clamp", "deltas_decode_combined", "deltas_encode_combined",
    "deltas_from_corners", "deltas_ignored_rows", "deltas_log_inverted",
    "find_library_box_ops", "find_random_sampling", "first_hint",
    "iou_nan_on_zero_union", "iou_out_of_range", "iou_plus_one", "iou_union_keeps_intersection",
    "load_variants", "nms_ignores_scores", "nms_properties", "nms_sorted_positions",
    "nms_threshold_boundary", "nms_unordered", "variants_for",
]
