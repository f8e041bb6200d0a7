"""Hidden checks of ``rpn.RPNPredictionNetwork`` (``rpn_pred_net``), ``RPN.predict_proposals``
(``rpn_proposals``) and the RPN training losses (``rpn_losses``).

Isolation: the prediction network gets the reference's weights; the proposal check feeds
reference anchors and fixed predictions straight to ``predict_proposals``; the loss check
replays fixed predictions in place of the prediction network, replaces the sampler by
:func:`autograder.sandboxed.probes.deterministic_sampler` and stubs the proposals. Expected values
come from the same probes run on the reference package.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
import torch
from torch import Tensor

from autograder.sandboxed import probes
from autograder.compare import Fail, FailureDetails, assert_close, assert_on_device, split_levels
from autograder.feedback import VariantHints
from autograder.feedback.probing import call_explained, sampler_hints
from autograder.sandbox import SandboxClient

#: Convolution outputs and losses: float32 sums over a few hundred terms.
PRED_NET_TOL = 1e-5
PROPOSALS_TOL = 1e-5
LOSS_TOL = 1e-5
GRAD_TOL = 1e-4

STRIDES = {"p3": 8, "p4": 16, "p5": 32}
#: Image (height, width): non-square, so that x/y mix-ups show.
IMAGE_HW = (64, 96)
CHANNELS = 8
#: Standard deviation of the random weights loaded into both networks (larger than the
#: 0.01 init so that the outputs are far from zero).
WEIGHT_STD = 0.1


def feature_maps(batch: int, g: torch.Generator, image_hw: tuple[int, int] = IMAGE_HW) -> dict[str, Tensor]:
    h, w = image_hw
    return {level: torch.randn(batch, CHANNELS, h // s, w // s, generator=g) for level, s in STRIDES.items()}


def random_weights(module: torch.nn.Module, g: torch.Generator) -> dict[str, Tensor]:
    return {name: torch.randn(t.shape, generator=g) * WEIGHT_STD for name, t in module.state_dict().items()}


# ----------------------------------------------------------------------------------------
# RPNPredictionNetwork
# ----------------------------------------------------------------------------------------

PRED_NET_CASES: dict[str, dict[str, Any]] = {
    "one_stem_layer_batch2": {"ctor": {"in_channels": CHANNELS, "stem_channels": [8], "num_anchors": 3}, "batch": 2},
    "two_stem_layers": {"ctor": {"in_channels": CHANNELS, "stem_channels": [6, 5], "num_anchors": 3}, "batch": 1},
    "five_anchors": {"ctor": {"in_channels": CHANNELS, "stem_channels": [4], "num_anchors": 5}, "batch": 2},
    "one_anchor_small_image": {
        "ctor": {"in_channels": CHANNELS, "stem_channels": [4], "num_anchors": 1}, "batch": 3, "image": (32, 64),
    },
}


def pred_net_case(ref: Any, case: str) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(inputs, probe params) of a prediction-network case: reference-shaped weights and features."""
    spec = PRED_NET_CASES[case]
    g = torch.Generator().manual_seed(100 + list(PRED_NET_CASES).index(case))
    weights = random_weights(ref.rpn.RPNPredictionNetwork(**spec["ctor"]), g)
    feats = feature_maps(spec["batch"], g, spec.get("image", IMAGE_HW))
    inputs = {**{f"w.{k}": v for k, v in weights.items()}, **{f"feats.{k}": v for k, v in feats.items()}}
    return inputs, {"ctor_kwargs": spec["ctor"]}


@pytest.mark.rubric("rpn_pred_net")
@pytest.mark.parametrize("case", list(PRED_NET_CASES))
def test_rpn_pred_net_matches_reference(case: str, student: SandboxClient, ref: ModuleType) -> None:
    inputs, params = pred_net_case(ref, case)
    out = call_explained(student, "rpn_pred_net_forward", inputs, PRED_NET_PARAM_ADVICE, **params)
    expected = probes.rpn_pred_net_forward(ref, inputs, **params, device="cpu")
    assert_on_device(out, "RPNPredictionNetwork.forward")
    variants = VariantHints(ref, "rpn_pred_net", probes.rpn_pred_net_forward, inputs, params, out, expected, student)
    for kind, label in (("obj", "object_logits"), ("box", "boxreg_deltas")):
        actual, exp = split_levels(out, kind), split_levels(expected, kind)
        if set(actual) != set(exp):
            raise Fail(f"RPNPredictionNetwork.forward: {label} has levels {sorted(actual)}, expected {sorted(exp)}.")
        for level in exp:
            key = f"{kind}.{level}"
            assert_close(
                actual[level], exp[level], tol=PRED_NET_TOL, what=f"RPNPredictionNetwork.forward {label}[{level!r}]",
                hints=variants.hints(key), shape_hints=variants.hints(key), explain_inputs=inputs,
                advice=PRED_NET_ADVICE[kind],
            )


#: How each layer of RPNPredictionNetwork is built (for a missing or misshaped parameter).
PRED_NET_PARAM_ADVICE = {
    "stem_rpn.0.": "the first stem conv takes in_channels inputs and gives stem_channels[0] outputs (no fixed numbers)",
    "stem_rpn.": "stem conv i takes the previous layer's channels and gives stem_channels[i] (a 3x3 conv, then ReLU)",
    "pred_obj.": "pred_obj is a 1x1 conv from the last stem channels to num_anchors outputs",
    "pred_box.": "pred_box is a 1x1 conv from the last stem channels to 4 * num_anchors outputs",
}
#: What to check when a forward output differs and no known mistake matches.
PRED_NET_ADVICE = {
    "obj": "stem (3x3 conv + ReLU per layer), then pred_obj; (B, A, H, W) -> (B, H, W, A) -> (B, H*W*A)",
    "box": "stem (3x3 conv + ReLU per layer), then pred_box; (B, 4A, H, W) -> (B, H, W, 4A) -> (B, H*W*A, 4)",
}


#: The specified init: conv weights from N(0, RPN_INIT_STD), biases 0. The accepted band for
#: the sample standard deviation is wide enough for the smallest layer (96 weights: the
#: sample std is within 40% of the true one with overwhelming probability).
RPN_INIT_STD = 0.01
INIT_STD_BAND = (0.6 * RPN_INIT_STD, 1.4 * RPN_INIT_STD)
INIT_CTOR = {"in_channels": 16, "stem_channels": [32, 32], "num_anchors": 3}


@pytest.mark.rubric("rpn_pred_net")
@pytest.mark.edge_case  # counts once a forward case passes: a constant forward with a good init earns nothing
def test_rpn_pred_net_initialisation(student: SandboxClient, ref: ModuleType) -> None:
    out = student.call("rpn_pred_net_init", {}, ctor_kwargs=INIT_CTOR, seed=7)
    expected = probes.rpn_pred_net_init(ref, {}, ctor_kwargs=INIT_CTOR, seed=7)
    what = "RPNPredictionNetwork initialisation"
    if len(split_levels(out, "std")) != len(split_levels(expected, "std")):
        raise Fail(f"{what}: the network does not have the specified number of convolutions.")
    low, high = INIT_STD_BAND
    for name, std in split_levels(out, "std").items():
        if not low <= float(std) <= high:
            raise Fail(f"{what}: the weights of {name} do not look drawn from N(0, 0.01) (init every conv weight so).")
    for name, max_abs in split_levels(out, "max_abs").items():
        if float(max_abs) != 0.0:
            raise Fail(f"{what}: the bias of {name} is not zero (init every conv bias to 0).")


def _same_values_other_order(actual: Tensor, expected: Tensor) -> bool:
    return actual.shape == expected.shape and torch.allclose(
        actual.flatten().sort().values, expected.flatten().sort().values, rtol=1e-4, atol=1e-6
    )


# ----------------------------------------------------------------------------------------
# Proposals
# ----------------------------------------------------------------------------------------

PROPOSAL_CASES: dict[str, dict[str, Any]] = {
    "defaults_batch2": {"ctor": {}, "batch": 2, "delta_std": 0.3},
    "small_topk": {"ctor": {"pre_nms_topk": 50, "post_nms_topk": 10}, "batch": 2, "delta_std": 0.3},
    "pre_nms_topk_limits": {"ctor": {"pre_nms_topk": 12, "post_nms_topk": 100}, "batch": 2, "delta_std": 0.3},
    "nms_0.5": {"ctor": {"nms_thresh": 0.5, "pre_nms_topk": 120, "post_nms_topk": 30}, "batch": 1, "delta_std": 0.5},
    "large_deltas_clipped": {"ctor": {"pre_nms_topk": 80, "post_nms_topk": 40}, "batch": 2, "delta_std": 1.5},
    "stride_scale_4_two_ratios": {
        "ctor": {"anchor_stride_scale": 4, "anchor_aspect_ratios": [0.5, 2.0], "pre_nms_topk": 60, "post_nms_topk": 25},
        "batch": 1, "delta_std": 0.3,
    },
}

RPN_BASE = {"fpn_channels": CHANNELS, "stem_channels": [8], "batch_size_per_image": 16}


def proposal_inputs(ref: Any, spec: dict[str, Any], seed: int) -> tuple[dict[str, Any], dict[str, Tensor]]:
    ctor = {**RPN_BASE, **spec["ctor"]}
    ratios = ctor.get("anchor_aspect_ratios", [0.5, 1.0, 2.0])
    g = torch.Generator().manual_seed(seed)
    shapes = {level: (spec["batch"], CHANNELS, IMAGE_HW[0] // s, IMAGE_HW[1] // s) for level, s in STRIDES.items()}
    locations = ref.anchors.get_fpn_location_coords(shapes, STRIDES)
    anchors = ref.anchors.generate_fpn_anchors(locations, STRIDES, ctor.get("anchor_stride_scale", 8), ratios)
    inputs: dict[str, Tensor] = {}
    for level, level_anchors in anchors.items():
        n = level_anchors.shape[0]
        inputs[f"anchors.{level}"] = level_anchors
        inputs[f"obj.{level}"] = torch.randn(spec["batch"], n, generator=g) * 3
        inputs[f"box.{level}"] = torch.randn(spec["batch"], n, 4, generator=g) * spec["delta_std"]
    return ctor, inputs


def proposal_case(ref: Any, case: str) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(inputs, probe params) of a proposals case."""
    ctor, inputs = proposal_inputs(ref, PROPOSAL_CASES[case], 200 + list(PROPOSAL_CASES).index(case))
    return inputs, {"ctor_kwargs": ctor, "image_size": list(IMAGE_HW)}


@pytest.mark.rubric("rpn_proposals")
@pytest.mark.parametrize("case", list(PROPOSAL_CASES))
def test_rpn_proposals_match_reference(case: str, student: SandboxClient, ref: ModuleType) -> None:
    inputs, params = proposal_case(ref, case)
    out = student.call("rpn_predict_proposals", inputs, **params)
    expected_out = probes.rpn_predict_proposals(ref, inputs, **params, device="cpu")
    expected = split_levels(expected_out, "proposals")
    what = "RPN.predict_proposals"
    assert_on_device(out, what)
    actual = split_levels(out, "proposals")
    probe = probes.rpn_predict_proposals
    variants = VariantHints(ref, "rpn_proposals", probe, inputs, params, out, expected_out, student)
    for key, exp in expected.items():  # key = "<level>.<image>"
        level, image = key.split(".")
        label = f"{what}: proposals[{level!r}][{image}]"
        details = FailureDetails(label, actual.get(key), exp, inputs)
        if key not in actual:
            raise Fail(f"{label} is missing: return one list of B tensors per level.", details)
        got = actual[key]
        if got.shape != exp.shape:
            count = got.shape[0] if got.dim() else 0
            more = "more" if count > exp.shape[0] else "fewer"
            message = f"{label} has {count} boxes, {more} than the reference."
            hint = variants.hint(f"proposals.{key}") or _proposals_property(got, exp)
            if hint is not None:
                raise Fail(f"{message} Likely mistake: {hint}.", details)
            raise Fail(f"{message} Check: {PROPOSAL_COUNT_ADVICE[more]}.", details)
        assert_close(
            got, exp, tol=PROPOSALS_TOL, what=label, hints=[*variants.hints(f"proposals.{key}"), _proposals_hint],
            columns=("x1", "y1", "x2", "y2"), explain_inputs=inputs,
            advice="top pre_nms_topk per level and image, decode, clip to (height, width), NMS, first post_nms_topk",
        )


#: What to check when a level/image has another number of proposals and no known mistake matches.
PROPOSAL_COUNT_ADVICE = {
    "more": "the top-k before NMS (pre_nms_topk per level and image), the NMS threshold (nms_thresh) and post_nms_topk",
    "fewer": "the top-k before NMS (pre_nms_topk per level and image), the NMS threshold (nms_thresh) and the clip",
}


def _proposals_property(actual: Tensor, expected: Tensor) -> str | None:
    """Where the student's proposals leave the (IMAGE_HW) image, from their own values alone."""
    if actual.dim() != 2 or actual.shape[-1] != 4 or actual.numel() == 0:
        return None
    h, w = IMAGE_HW
    xs, ys = actual[:, 0::2], actual[:, 1::2]
    if bool((xs < -1e-3).any() or (ys < -1e-3).any()):
        return "some proposals have negative coordinates: clip the decoded boxes to the image before NMS"
    x_out, y_out = bool((xs > w + 1e-3).any()), bool((ys > h + 1e-3).any())
    if x_out != y_out and max(float(xs.max()), float(ys.max())) <= max(h, w) + 1e-3:
        axis, limit = ("x", "width") if x_out else ("y", "height")
        return (
            f"some proposals have {axis} beyond the image's {limit}: image_size is (height, width), "
            "so clip x to [0, width] and y to [0, height]"
        )
    if x_out or y_out:
        return "some proposals extend outside the image: clip the decoded boxes to x in [0, width], y in [0, height]"
    return None


def _proposals_hint(actual: Tensor, expected: Tensor, inputs: Any) -> str | None:
    prop = _proposals_property(actual, expected)
    if prop is not None:
        return prop
    if _same_values_other_order(actual, expected):
        return "return the proposals of each level in decreasing order of objectness"
    return None


# ----------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------

LOSS_CASES: dict[str, dict[str, Any]] = {
    "batch2_mixed": {"ctor": {}, "batch": 2, "gt_per_image": [3, 2]},
    "image_without_gt": {"ctor": {}, "batch": 2, "gt_per_image": [0, 4]},
    "few_samples": {"ctor": {"batch_size_per_image": 6}, "batch": 2, "gt_per_image": [5, 5]},
    "many_foreground": {"ctor": {"batch_size_per_image": 64}, "batch": 1, "gt_per_image": [8]},
    "other_iou_thresholds": {"ctor": {"anchor_iou_thresholds": [0.2, 0.5]}, "batch": 1, "gt_per_image": [3]},
}

#: GT rows per image (padding rows all -1).
MAX_GT = 10


def loss_inputs(ref: Any, spec: dict[str, Any], seed: int) -> tuple[dict[str, Any], dict[str, Tensor]]:
    ctor = {**RPN_BASE, **spec["ctor"]}
    g = torch.Generator().manual_seed(seed)
    feats = feature_maps(spec["batch"], g)
    shapes = {level: tuple(f.shape) for level, f in feats.items()}
    anchors = ref.anchors.generate_fpn_anchors(ref.anchors.get_fpn_location_coords(shapes, STRIDES), STRIDES, 8)
    candidates = torch.cat([anchors["p3"], anchors["p4"]])  # GT near these anchors gives foreground
    gt = torch.full((spec["batch"], MAX_GT, 5), -1.0)
    for image, count in enumerate(spec["gt_per_image"]):
        picks = torch.randint(0, candidates.shape[0], (count,), generator=g)
        boxes = candidates[picks] + torch.randn(count, 4, generator=g) * 3
        gt[image, :count, :4] = boxes
        gt[image, :count, 4] = torch.randint(0, 5, (count,), generator=g).float()
    inputs: dict[str, Tensor] = {"gt_boxes": gt}
    for level, f in feats.items():
        n = anchors[level].shape[0]
        inputs[f"feats.{level}"] = f
        inputs[f"obj.{level}"] = torch.randn(spec["batch"], n, generator=g) * 2
        inputs[f"box.{level}"] = torch.randn(spec["batch"], n, 4, generator=g) * 0.5
    return ctor, inputs


def loss_case(ref: Any, case: str) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(inputs, probe params) of an RPN loss case."""
    ctor, inputs = loss_inputs(ref, LOSS_CASES[case], 300 + list(LOSS_CASES).index(case))
    return inputs, {"ctor_kwargs": ctor, "strides": STRIDES}


@pytest.mark.rubric("rpn_losses")
@pytest.mark.parametrize("case", list(LOSS_CASES))
def test_rpn_losses_match_reference(case: str, student: SandboxClient, ref: ModuleType) -> None:
    inputs, params = loss_case(ref, case)
    ctor = params["ctor_kwargs"]
    out = student.call("rpn_losses", inputs, **params)
    expected = probes.rpn_losses(ref, inputs, **params, device="cpu")
    what = "RPN.forward (training)"
    assert_on_device(out, what)
    variants = VariantHints(ref, "rpn_losses", probes.rpn_losses, inputs, params, out, expected, student)
    rerun, static = sampler_hints(student, "rpn", "rpn_losses", inputs, params, out)
    for key in ("loss_rpn_obj", "loss_rpn_box"):
        assert_close(
            out.get(key), expected[key], tol=LOSS_TOL, what=f"{what} {key}", explain_inputs=inputs,
            hints=[rerun, *variants.hints(key, static, _loss_hint(key, ctor))], advice=LOSS_ADVICE[key],
        )
    for name, exp in expected.items():
        if name.startswith("grad_"):
            if name not in out:
                raise Fail(f"{what}: the losses do not depend on the predictions (detached or recomputed tensors?).")
            assert_close(
                out[name], exp, tol=GRAD_TOL, what=f"{what} gradient of the losses w.r.t. the predictions",
                hints=[rerun, *variants.hints(name, static)], explain_inputs=inputs, advice=GRAD_ADVICE,
            )


#: What to check when a loss differs and no known mistake matches.
LOSS_ADVICE = {
    "loss_rpn_obj": (
        "BCE-with-logits on the sampled anchors (1 foreground, 0 background), summed, divided by "
        "batch_size_per_image * B"
    ),
    "loss_rpn_box": (
        "L1 between predicted and GT deltas of the sampled foreground anchors, summed, divided by "
        "batch_size_per_image * B"
    ),
}
GRAD_ADVICE = "compute both losses from the predictions themselves (no .detach(), .item() or new tensors)"


def _loss_hint(key: str, ctor: dict[str, Any]) -> Any:
    """Hint when the student's loss is the reference's times a whole number (or its inverse)."""

    def hint(actual: Tensor, expected: Tensor, inputs: Any) -> str | None:
        a, e = abs(float(actual)), abs(float(expected))
        if a == 0 or e == 0:
            return None
        ratio = max(a, e) / min(a, e)
        if ratio > 1.5 and abs(ratio - round(ratio)) < 1e-3 * ratio:
            return f"{key} is off by a constant factor: sum over the sampled anchors and divide by batch_size_per_image * B"
        return None

    return hint


#: rubric id -> (probe, case names, case builder): the buggy variants of each check
#: (autograder/feedback/variants.toml) are tested on these (tests/autograder/test_variants.py).
PROBE_CASES: dict[str, tuple[Any, list[str], Any]] = {
    "rpn_pred_net": (probes.rpn_pred_net_forward, list(PRED_NET_CASES), pred_net_case),
    "rpn_proposals": (probes.rpn_predict_proposals, list(PROPOSAL_CASES), proposal_case),
    "rpn_losses": (probes.rpn_losses, list(LOSS_CASES), loss_case),
}
