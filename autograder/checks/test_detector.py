"""Hidden checks of ``detector.FasterRCNN``: the second-stage head (``frcnn_head``), its
training losses (``frcnn_losses``) and inference (``frcnn_inference``).

Isolation: the detector runs on a replay backbone (fixed features) and a replay RPN (fixed
proposals and RPN losses), never the student's RPN. The head check loads the reference's
weights into the student's ``roi_stem``/``cls_pred``/``box_pred`` by parameter name and
checks ``_roi_features``; the loss and inference checks send a table of RoI features through
the stem computed here with the reference's own code (:func:`reference_roi_table`) and use
predictors with the same weights, so a head bug costs points only once. The
sampler is :func:`autograder.sandboxed.probes.deterministic_sampler` on both sides (see :mod:`autograder.sandboxed.probes_detector`).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
import torch
from torch import Tensor

from autograder.sandboxed import probes, probes_detector
from autograder.compare import Fail, FailureDetails, assert_close, assert_equal_indices, assert_on_device
from autograder.feedback import VariantHints
from autograder.feedback.probing import call_explained, sampler_hints
from autograder.sandboxed.probes import group
from autograder.sandbox import SandboxClient

#: Linear layers and RoIAlign over a few hundred float32 terms.
HEAD_TOL = 1e-5
LOSS_TOL = 1e-5
GRAD_TOL = 1e-4
BOXES_TOL = 1e-5

STRIDES = {"p3": 8, "p4": 16, "p5": 32}
IMAGE_HW = (64, 96)
CHANNELS = 8
NUM_CLASSES = 4
MAX_GT = 6
#: Standard deviation of the random head weights (so that class scores spread out).
WEIGHT_STD = 0.15

BASE_CTOR: dict[str, Any] = {
    "stem_channels": [6], "num_classes": NUM_CLASSES, "batch_size_per_image": 16, "roi_size": [3, 3],
}


def head_weights(ref: Any, ctor: dict[str, Any], g: torch.Generator) -> dict[str, Tensor]:
    """Random weights for the reference head's ``roi_stem``/``cls_pred``/``box_pred``."""
    backbone = probes.Replay({}, out_channels=CHANNELS, fpn_strides=STRIDES)
    model = ref.detector.FasterRCNN(backbone, probes.Replay({}), **ctor)
    return {
        f"w.{name}": torch.randn(t.shape, generator=g) * WEIGHT_STD
        for name, t in model.state_dict().items()
        if name.startswith(("roi_stem.", "cls_pred.", "box_pred."))
    }


def random_proposals(n: int, g: torch.Generator, near: Tensor | None = None) -> Tensor:
    """Tensor[n, 4] XYXY proposals inside the image; with ``near`` (Tensor[G, 4]) half jitter around GT boxes."""
    h, w = IMAGE_HW
    xy = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.8, h * 0.8])
    wh = 6 + torch.rand(n, 2, generator=g) * 40
    boxes = torch.cat([xy, xy + wh], dim=1)
    if near is not None and near.shape[0] > 0:
        k = n // 2
        picks = torch.randint(0, near.shape[0], (k,), generator=g)
        boxes[:k] = near[picks] + torch.randn(k, 4, generator=g) * 2
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
    return boxes


def random_gt(batch: int, counts: list[int], num_classes: int, g: torch.Generator) -> Tensor:
    """Tensor[B, MAX_GT, 5] GT rows (x1, y1, x2, y2, class), padding rows all -1."""
    gt = torch.full((batch, MAX_GT, 5), -1.0)
    for image, count in enumerate(counts):
        gt[image, :count, :4] = random_proposals(count, g)
        gt[image, :count, 4] = torch.randint(0, num_classes, (count,), generator=g).float()
    return gt


def scene(
    ref: Any, ctor: dict[str, Any], batch: int, seed: int, per_level: list[int], gt_counts: list[int]
) -> dict[str, Tensor]:
    """Weights, features, GT and proposals (``proposals.<level>.<image>``) for one case."""
    g = torch.Generator().manual_seed(seed)
    h, w = IMAGE_HW
    inputs = head_weights(ref, ctor, g)
    for level, s in STRIDES.items():
        inputs[f"feats.{level}"] = torch.randn(batch, CHANNELS, h // s, w // s, generator=g)
    gt = random_gt(batch, gt_counts, ctor["num_classes"], g)
    inputs["gt_boxes"] = gt
    for (level, count) in zip(STRIDES, per_level):
        for image in range(batch):
            real = gt[image][gt[image, :, 4] != -1, :4]
            inputs[f"proposals.{level}.{image}"] = random_proposals(count, g, near=real)
    inputs["images"] = torch.randn(batch, 3, h, w, generator=g)
    return inputs


def reference_roi_table(ref: Any, inputs: dict[str, Tensor], ctor: dict[str, Any]) -> dict[str, Tensor]:
    """The RoI table of :func:`probes_detector.replay_roi_features`, made with the reference's own code.

    Rows: every box the detector may RoIAlign, i.e. the proposals of each image and level
    with the GT boxes mixed in (``mix_gt_with_proposals``), flattened level-major; features:
    ``roi_stem(_roi_features(...))`` of the reference with the case's weights, Tensor[K, D].
    """
    feats = group(inputs, "feats")
    batch = next(iter(feats.values())).shape[0]
    proposals = {level: [inputs[f"proposals.{level}.{i}"] for i in range(batch)] for level in feats}
    boxes, image_ids, level_ids = ref.detector.flatten_proposals(ref.detector.mix_gt_with_proposals(proposals, inputs["gt_boxes"]))
    backbone = probes.Replay({}, out_channels=CHANNELS, fpn_strides=STRIDES)
    model = ref.detector.FasterRCNN(backbone, probes.Replay({}), **ctor)
    probes.load_weights(model, group(inputs, probes.WEIGHT_PREFIX.rstrip(".")), "reference FasterRCNN")
    with torch.no_grad():
        table = model.roi_stem(model._roi_features(feats, boxes, image_ids, level_ids))  # (K, D)
    prefix = probes_detector.ROI_TABLE_PREFIX
    return {f"{prefix}boxes": boxes, f"{prefix}image_ids": image_ids, f"{prefix}level_ids": level_ids, f"{prefix}feats": table}


# ----------------------------------------------------------------------------------------
# Head: constructor (structure, weights by name) and _roi_features
# ----------------------------------------------------------------------------------------

HEAD_CASES: dict[str, dict[str, Any]] = {
    "batch2_roi3": {"ctor": BASE_CTOR, "batch": 2, "per_level": [5, 4, 3]},
    "two_stem_layers": {"ctor": {**BASE_CTOR, "stem_channels": [6, 5]}, "batch": 1, "per_level": [4, 3, 2]},
    "roi7_one_class": {"ctor": {**BASE_CTOR, "num_classes": 1, "roi_size": [7, 7]}, "batch": 2, "per_level": [3, 0, 2]},
    "non_square_roi": {"ctor": {**BASE_CTOR, "roi_size": [2, 4]}, "batch": 1, "per_level": [6, 2, 1]},
}


def head_case(ref: Any, case: str) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(inputs, probe params) of a head case: weights, features, flattened proposals, a RoI batch."""
    spec = HEAD_CASES[case]
    seed = 400 + list(HEAD_CASES).index(case)
    inputs = scene(ref, spec["ctor"], spec["batch"], seed, spec["per_level"], [2] * spec["batch"])
    del inputs["gt_boxes"], inputs["images"]
    proposals = {level: [inputs.pop(f"proposals.{level}.{i}") for i in range(spec["batch"])] for level in STRIDES}
    boxes, image_ids, level_ids = ref.detector.flatten_proposals(proposals)
    inputs.update(roi_boxes=boxes, roi_image_ids=image_ids, roi_level_ids=level_ids)
    g = torch.Generator().manual_seed(seed + 50)
    inputs["roi_input"] = torch.randn(7, CHANNELS, *spec["ctor"]["roi_size"], generator=g)
    return inputs, {"ctor_kwargs": spec["ctor"], "strides": STRIDES}


@pytest.mark.rubric("frcnn_head")
@pytest.mark.parametrize("case", list(HEAD_CASES))
def test_frcnn_head_matches_reference(case: str, student: SandboxClient, ref: ModuleType) -> None:
    inputs, params = head_case(ref, case)
    out = call_explained(student, "frcnn_head", inputs, HEAD_PARAM_ADVICE, **params)
    expected = probes_detector.frcnn_head(ref, inputs, **params, device="cpu")
    assert_on_device(out, "FasterRCNN head")
    variants = VariantHints(ref, "frcnn_head", probes_detector.frcnn_head, inputs, params, out, expected, student)
    for key, what, advice in (
        ("cls", "cls_pred(roi_stem(roi_features))", HEAD_ADVICE),
        ("box", "box_pred(roi_stem(roi_features))", HEAD_ADVICE),
        ("roi_feats", "FasterRCNN._roi_features", ROI_ADVICE),
    ):
        assert_close(
            out.get(key), expected[key], tol=HEAD_TOL, what=what, hints=variants.hints(key),
            shape_hints=variants.hints(key), explain_inputs=inputs, advice=advice,
        )


ROI_ADVICE = (
    "roi_align on each box's own level with rows (image_id, x1, y1, x2, y2), spatial_scale = 1 / stride "
    "and aligned=True, results in the rows of the boxes they came from"
)
HEAD_ADVICE = "roi_stem is (3x3 conv, padding 1, ReLU) per stem layer then Flatten; cls_pred and box_pred are Linear"
#: How each head layer is built (for a missing or misshaped parameter).
HEAD_PARAM_ADVICE = {
    "roi_stem.0.": "the first RoI stem conv takes backbone.out_channels inputs (no fixed channel count)",
    "roi_stem.": "RoI stem conv i takes the previous layer's channels and gives stem_channels[i]",
    "cls_pred.": "cls_pred maps (last stem channels) * roi_size[0] * roi_size[1] inputs to num_classes + 1 (no fixed 7x7)",
    "box_pred.": "box_pred maps (last stem channels) * roi_size[0] * roi_size[1] inputs to 4 * num_classes (no fixed 7x7)",
}


# ----------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------

LOSS_CASES: dict[str, dict[str, Any]] = {
    "batch2": {"ctor": BASE_CTOR, "batch": 2, "per_level": [12, 8, 4], "gt": [3, 2]},
    "image_without_gt": {"ctor": BASE_CTOR, "batch": 2, "per_level": [10, 6, 3], "gt": [0, 3]},
    "few_samples": {"ctor": {**BASE_CTOR, "batch_size_per_image": 5}, "batch": 2, "per_level": [12, 8, 4], "gt": [4, 4]},
    "one_class": {"ctor": {**BASE_CTOR, "num_classes": 1}, "batch": 1, "per_level": [14, 6, 2], "gt": [3]},
}


def loss_case(ref: Any, case: str) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(inputs, probe params) of a second-stage loss case (the RPN's losses are passed through)."""
    spec = LOSS_CASES[case]
    seed = 500 + list(LOSS_CASES).index(case)
    inputs = scene(ref, spec["ctor"], spec["batch"], seed, spec["per_level"], spec["gt"])
    inputs["loss_rpn_obj"] = torch.tensor(0.6931)
    inputs["loss_rpn_box"] = torch.tensor(0.125)
    inputs.update(reference_roi_table(ref, inputs, spec["ctor"]))
    return inputs, {"ctor_kwargs": spec["ctor"], "strides": STRIDES}


@pytest.mark.rubric("frcnn_losses")
@pytest.mark.parametrize("case", list(LOSS_CASES))
def test_frcnn_losses_match_reference(case: str, student: SandboxClient, ref: ModuleType) -> None:
    inputs, params = loss_case(ref, case)
    out = student.call("frcnn_losses", inputs, **params)
    expected = probes_detector.frcnn_losses(ref, inputs, **params, device="cpu")
    what = "FasterRCNN.forward (training)"
    assert_on_device(out, what)
    variants = VariantHints(ref, "frcnn_losses", probes_detector.frcnn_losses, inputs, params, out, expected, student)
    rerun, static = sampler_hints(student, "detector", "frcnn_losses", inputs, params, out)
    for key in ("loss_rpn_obj", "loss_rpn_box", "loss_cls", "loss_box"):
        assert_close(
            out.get(key), expected[key], tol=LOSS_TOL, what=f"{what} {key}", advice=LOSS_ADVICE[key],
            hints=[rerun, *variants.hints(key, static)], explain_inputs=inputs,
        )
    for name, exp in expected.items():
        if name.startswith("grad."):
            if name not in out:
                raise Fail(f"{what}: the losses do not depend on cls_pred / box_pred (detached tensors?).")
            assert_close(
                out[name], exp, tol=GRAD_TOL, what=f"{what} gradient of loss_cls + loss_box w.r.t. the head",
                hints=[rerun, *variants.hints(name, static)], explain_inputs=inputs,
                advice="compute loss_cls and loss_box from the head's outputs (no .detach(), .item() or new tensors)",
            )


LOSS_ADVICE = {
    "loss_rpn_obj": "return the RPN's losses unchanged",
    "loss_rpn_box": "return the RPN's losses unchanged",
    "loss_cls": "cross-entropy over C + 1 classes (background 0, GT class c is c + 1), mean over the samples",
    "loss_box": (
        "smooth-L1 (beta BOX_LOSS_BETA) on the deltas of each foreground sample's GT class, "
        "summed and divided by the number of samples"
    ),
}


# ----------------------------------------------------------------------------------------
# Inference
# ----------------------------------------------------------------------------------------

INFERENCE_CASES: dict[str, dict[str, Any]] = {
    "score_0.3_nms_0.5": {"ctor": BASE_CTOR, "per_level": [20, 10, 5], "score": 0.3, "nms": 0.5},
    "score_0_nms_0.3": {"ctor": BASE_CTOR, "per_level": [15, 8, 4], "score": 0.0, "nms": 0.3},
    "high_threshold": {"ctor": BASE_CTOR, "per_level": [20, 10, 5], "score": 0.45, "nms": 0.5},
    "one_class": {"ctor": {**BASE_CTOR, "num_classes": 1}, "per_level": [12, 6, 3], "score": 0.5, "nms": 0.5},
    "large_deltas": {"ctor": BASE_CTOR, "per_level": [20, 10, 5], "score": 0.2, "nms": 0.5, "weight_scale": 6.0},
}


def inference_case(ref: Any, case: str) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(inputs, probe params) of an inference case (one image)."""
    spec = INFERENCE_CASES[case]
    seed = 600 + list(INFERENCE_CASES).index(case)
    inputs = scene(ref, spec["ctor"], 1, seed, spec["per_level"], [3])
    for name in [n for n in inputs if n.startswith("w.box_pred")]:
        inputs[name] = inputs[name] * spec.get("weight_scale", 1.0)
    inputs.update(reference_roi_table(ref, inputs, spec["ctor"]))
    params = {"ctor_kwargs": spec["ctor"], "strides": STRIDES, "score_thresh": spec["score"], "nms_thresh": spec["nms"]}
    return inputs, params


@pytest.mark.rubric("frcnn_inference")
@pytest.mark.parametrize("case", list(INFERENCE_CASES))
def test_frcnn_inference_matches_reference(case: str, student: SandboxClient, ref: ModuleType) -> None:
    spec = INFERENCE_CASES[case]
    inputs, params = inference_case(ref, case)
    out = student.call("frcnn_inference", inputs, **params)
    expected = probes_detector.frcnn_inference(ref, inputs, **params, device="cpu")
    what = "FasterRCNN.forward (eval)"
    assert_on_device(out, what)
    probe = probes_detector.frcnn_inference
    variants = VariantHints(ref, "frcnn_inference", probe, inputs, params, out, expected, student)
    classes = out.get("classes")
    if isinstance(classes, Tensor) and classes.shape != expected["classes"].shape:
        more = "more" if classes.numel() > expected["classes"].numel() else "fewer"
        message = f"{what}: {classes.numel()} detections, {more} than the reference."
        hint = variants.hint("classes") or _detections_property(out, spec)
        details = FailureDetails(f"{what} pred_classes", classes, expected["classes"], inputs)
        if hint is not None:
            raise Fail(f"{message} Likely mistake: {hint}.", details)
        raise Fail(f"{message} Check: {DETECTION_COUNT_ADVICE}.", details)
    assert_equal_indices(
        classes, expected["classes"], what=f"{what} pred_classes", inputs=inputs,
        hints=variants.hints("classes", _class_hint), explain=lambda _: _detections_property(out, spec),
    )
    assert_close(
        out.get("scores"), expected["scores"], tol=BOXES_TOL, what=f"{what} pred_scores", explain_inputs=inputs,
        hints=variants.hints("scores"),
        advice="the score is the highest softmax probability among the C object classes",
    )
    assert_close(
        out.get("boxes"), expected["boxes"], tol=BOXES_TOL, what=f"{what} pred_boxes", explain_inputs=inputs,
        hints=variants.hints("boxes", lambda a, e, i: _detections_property(out, spec)),
        columns=("x1", "y1", "x2", "y2"),
        advice="decode the deltas of the predicted class at its proposal, then clip to the image",
    )


DETECTION_COUNT_ADVICE = (
    "the class scores (softmax over C + 1, best of classes 1..C), the score threshold (test_score_thresh) "
    "and class-specific NMS (test_nms_thresh)"
)


def _detections_property(out: Any, spec: dict[str, Any]) -> str | None:
    """Which rule of the eval output the student's detections break (from their own values only)."""
    classes, scores, boxes = out.get("classes"), out.get("scores"), out.get("boxes")
    num_classes = spec["ctor"]["num_classes"]
    if isinstance(classes, Tensor) and classes.numel():
        if bool((classes < 0).any()) or bool((classes >= num_classes).any()):
            return "some pred_classes are outside 0..C-1 (background must never be predicted; classes are shifted by 1)"
    if isinstance(scores, Tensor) and scores.numel() and scores.is_floating_point():
        if bool((scores <= spec["score"]).any()):
            return "some pred_scores are not above test_score_thresh: drop those detections before NMS"
        if bool((scores[1:] > scores[:-1]).any()):
            return "the detections are not in decreasing order of score"
    if isinstance(boxes, Tensor) and boxes.dim() == 2 and boxes.shape[-1] == 4 and boxes.numel():
        h, w = IMAGE_HW
        if bool((boxes < -1e-3).any() or (boxes[:, 0::2] > w + 1e-3).any() or (boxes[:, 1::2] > h + 1e-3).any()):
            return "some boxes extend outside the image: clip them to (height, width)"
    return None


def _class_hint(actual: Tensor, expected: Tensor, inputs: Any) -> str | None:
    if actual.shape == expected.shape and bool((actual == expected + 1).all()):
        return "pred_classes are 0..C-1: subtract 1 from the head's class index (0 there is background)"
    return None


#: rubric id -> (probe, case names, case builder): the buggy variants of each check
#: (autograder/feedback/variants.toml) are tested on these (tests/autograder/test_variants.py).
PROBE_CASES: dict[str, tuple[Any, list[str], Any]] = {
    "frcnn_head": (probes_detector.frcnn_head, list(HEAD_CASES), head_case),
    "frcnn_losses": (probes_detector.frcnn_losses, list(LOSS_CASES), loss_case),
    "frcnn_inference": (probes_detector.frcnn_inference, list(INFERENCE_CASES), inference_case),
}
