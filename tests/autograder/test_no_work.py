"""Work that was not done earns nothing (issue #8): the stub, and constant answers, score 0.

- The untouched release (assignments/faster_rcnn: every TODO raises NotImplementedError)
  scores 0 on every group: tests/autograder/test_gradescope_bundle.py grades it through
  Gradescope's steps.
- For each unit group, a submission whose function under test returns a constant of the
  right shape (zeros, the anchors unchanged, empty or all indices, zero losses, no
  detections) scores 0 on that group by the runner's scoring rules
  (:mod:`autograder.scoring`: edge cases count only once a main case passes). Where a
  constant passed a main case, the case is marked edge: the RPN prediction network's
  initialisation check (a constant forward with the default init passed it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from autograder.variants import edited_copy
from check_driver import group_score, run_direct_outcomes
from corpus_build import REFERENCE_DIR
from test_corpus import UNIT_IDS


#: (rubric id, what the constant is, the edit that makes the function under test return it).
CONSTANTS: list[tuple[str, str, dict[str, object]]] = [
    ("iou", "zeros", {"file": "iou.py", "block": 0, "new": (
        "return torch.zeros(boxes1.shape[0], boxes2.shape[0], dtype=boxes1.dtype, device=boxes1.device)")}),
    ("nms", "every index", {"file": "nms.py", "block": 0, "new": (
        "return torch.arange(boxes.shape[0], device=boxes.device)")}),
    ("nms", "no index", {"file": "nms.py", "block": 0, "new": (
        "return torch.empty(0, dtype=torch.int64, device=boxes.device)")}),
    ("location_coords", "zeros", {"file": "anchors.py", "block": 0, "new": (
        "location_coords[level_name] = torch.zeros(feat_shape[2] * feat_shape[3], 2, dtype=dtype, device=device)")}),
    ("anchors", "zeros", {"file": "anchors.py", "block": 1, "new": (
        "anchors_per_fpn_level[level_name] = locations.new_zeros(locations.shape[0] * len(aspect_ratios), 4)")}),
    ("deltas_get", "zeros", {"file": "deltas.py", "block": 0, "new": "return torch.zeros_like(anchors)"}),
    ("deltas_get", "all -1e8", {"file": "deltas.py", "block": 0, "new": "return torch.full_like(anchors, IGNORED_DELTA)"}),
    ("deltas_apply", "the anchors unchanged", {"file": "deltas.py", "block": 1, "new": "return anchors.clone()"}),
    ("rpn_pred_net", "zeros", {"file": "rpn.py", "block": 1, "new": (
        "b, _, h, w = feats.shape\n"
        "object_logits[level_name] = feats.new_zeros(b, h * w * self.num_anchors)\n"
        "boxreg_deltas[level_name] = feats.new_zeros(b, h * w * self.num_anchors, 4)")}),
    ("rpn_proposals", "the anchors unchanged", {"file": "rpn.py", "block": 4, "new": (
        "for level in levels:\n    proposals[level].append(anchors_per_fpn_level[level][: self.post_nms_topk])")}),
    ("rpn_losses", "zero losses", {"file": "rpn.py", "block": 3, "new": (
        "output['loss_rpn_obj'] = obj_logits.sum() * 0\noutput['loss_rpn_box'] = boxreg.sum() * 0")}),
    ("frcnn_head", "zero RoI features", {"file": "detector.py", "block": 2, "new": (
        "first = next(iter(feats_per_fpn_level.values()))\n"
        "return first.new_zeros(boxes.shape[0], first.shape[1], *self.roi_size)")}),
    ("frcnn_losses", "zero losses", {"file": "detector.py", "block": 1, "new": (
        "loss_cls = self.cls_pred.weight.sum() * 0\nloss_box = self.box_pred.weight.sum() * 0")}),
    ("frcnn_inference", "no detections", {"file": "detector.py", "block": 3, "new": (
        "return proposals.new_zeros(0, 4), torch.zeros(0, dtype=torch.int64, device=proposals.device), "
        "proposals.new_zeros(0)")}),
]


def test_every_unit_group_has_a_constant_answer() -> None:
    assert {rid for rid, _, _ in CONSTANTS} == set(UNIT_IDS)


@pytest.mark.parametrize("rid, what, edit", CONSTANTS, ids=[f"{rid}-{what}" for rid, what, _ in CONSTANTS])
def test_a_constant_answer_scores_zero(rid: str, what: str, edit: dict[str, object], tmp_path: Path, ref) -> None:
    submission = edited_copy(REFERENCE_DIR, tmp_path / "submission", [edit], f"{rid} returns {what}")
    (tmp_path / "direct").mkdir()
    outcomes = run_direct_outcomes(submission, tmp_path / "direct", ref, [rid])[rid]
    assert any(not o.passed for o in outcomes), f"{rid} returning {what} passed every case"
    assert group_score(outcomes) == 0.0, f"{rid} returning {what} earns points: {[o.name for o in outcomes if o.passed]}"


# The untouched stubs scoring 0 on every group, the overfit test included, is
# tests/autograder/test_gradescope_bundle.py::test_stubs_score_0_on_every_group (a fresh bundle).
