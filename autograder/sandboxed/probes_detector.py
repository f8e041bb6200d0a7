"""Probes of ``detector.FasterRCNN`` (run in the sandboxed child, like :mod:`autograder.sandboxed.probes`).

The detector runs on a replay backbone (fixed features) and a replay RPN (fixed proposals
and RPN losses), so the student's RPN never runs here. The head check loads the reference's
weights into the student's ``roi_stem``/``cls_pred``/``box_pred``; the loss and inference
probes replay the RoI features through the stem from a table the grader computed with the
reference's own code (:func:`replay_roi_features`) and use Linear predictors with the
reference weights, so that a bug in the head costs points only in the head check. No
reference code is copied here: the child holds only the student's detector.

The sandbox copies this file beside ``probes.py`` into the child, where the ``autograder``
package does not exist: hence the fallback import below.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

from .probes import (
    ProbeError, Replay, _finish, _patched, _require_tensors, _weights, deterministic_sampler, group,
    load_weights, resolve_device,
)

# ----------------------------------------------------------------------------------------

#: Prefix of the inputs that hold the grader's RoI table (see :func:`replay_roi_features`).
ROI_TABLE_PREFIX = "roi_table."
#: Largest coordinate difference (pixels) at which a requested box is the table's box.
ROI_BOX_TOL = 1e-4


def replay_roi_features(inputs: Mapping[str, Tensor]) -> Callable[..., Tensor]:
    """A stand-in for ``FasterRCNN._roi_features`` that looks the boxes up in the grader's RoI table.

    The grader computes the table with the reference's own ``_roi_features`` and ``roi_stem``
    (reference weights) for every box the detector may ask for (each image's proposals and GT
    boxes, on their levels) and sends it as inputs ``roi_table.boxes`` Tensor[K, 4] XYXY,
    ``roi_table.image_ids`` and ``roi_table.level_ids`` Tensor[K] int64 and ``roi_table.feats``
    Tensor[K, D] (the stem's flattened output). The model's ``roi_stem`` is then the identity,
    so the head sees exactly the specified features without any reference code in the child.

    Returns:
        ``(feats_per_fpn_level, boxes Tensor[P, 4], image_ids Tensor[P], level_ids Tensor[P]) -> Tensor[P, D]``.
    """
    table_boxes, table_images, table_levels, table_feats = (
        inputs[f"{ROI_TABLE_PREFIX}{name}"] for name in ("boxes", "image_ids", "level_ids", "feats")
    )

    def lookup(feats_per_fpn_level: Any, boxes: Tensor, image_ids: Tensor, level_ids: Tensor) -> Tensor:
        if not (isinstance(boxes, Tensor) and boxes.dim() == 2 and boxes.shape[1] == 4):
            raise ProbeError(f"FasterRCNN._roi_features: boxes must be a Tensor[P, 4], got {getattr(boxes, 'shape', boxes)}")
        close = (boxes[:, None, :].to(table_boxes) - table_boxes[None]).abs().le(ROI_BOX_TOL).all(dim=2)  # (P, K)
        same = close & (image_ids.reshape(-1, 1) == table_images[None]) & (level_ids.reshape(-1, 1) == table_levels[None])
        missing = (~same.any(dim=1)).nonzero()
        if missing.numel():
            raise ProbeError(
                f"FasterRCNN._roi_features was asked for box {int(missing[0])}, which is not a proposal or GT box of "
                "that image on that level: pass the sampled proposals with their own image and level ids"
            )
        return table_feats[same.to(torch.uint8).argmax(dim=1)]  # (P, D) rows of the matching boxes

    return lookup


def _linear(weights: Mapping[str, Tensor], name: str) -> nn.Linear:
    """``nn.Linear`` with the reference weights ``<name>.weight`` Tensor[out, in] and ``<name>.bias``."""
    weight = weights[f"{name}.weight"]
    layer = nn.Linear(weight.shape[1], weight.shape[0]).to(weight.device)
    load_weights(layer, {k[len(name) + 1:]: v for k, v in weights.items() if k.startswith(name + ".")}, name)
    return layer


def _proposals(moved: Mapping[str, Tensor], num_images: int) -> dict[str, list[Tensor]]:
    """``{level: [Tensor[K_i, 4] per image]}`` from inputs ``proposals.<level>.<image>``."""
    levels = list(dict.fromkeys(name.split(".")[1] for name in moved if name.startswith("proposals.")))
    return {level: [moved[f"proposals.{level}.{i}"] for i in range(num_images)] for level in levels}


def _build_detector(
    pkg: ModuleType,
    moved: Mapping[str, Tensor],
    ctor_kwargs: dict[str, Any],
    strides: dict[str, int],
    replace_head: bool,
) -> nn.Module:
    """The student's FasterRCNN on a replay backbone and a replay RPN.

    With ``replace_head`` (loss and inference checks) ``_roi_features`` is
    :func:`replay_roi_features`, ``roi_stem`` the identity and the predictors Linear layers with
    the reference weights; if the student's constructor raises, the model is then assembled
    without it.
    """
    feats = group(moved, "feats")
    num_images = next(iter(feats.values())).shape[0]
    channels = next(iter(feats.values())).shape[1]
    backbone = Replay(feats, out_channels=int(channels), fpn_strides=dict(strides))
    rpn_output: dict[str, Any] = {"proposals": _proposals(moved, num_images)}
    for key in ("loss_rpn_obj", "loss_rpn_box"):
        if key in moved:
            rpn_output[key] = moved[key]
    rpn = Replay(rpn_output)
    cls = pkg.detector.FasterRCNN
    weights = _weights(moved, next(iter(feats.values())).device)
    try:
        model = cls(backbone, rpn, **ctor_kwargs)
    except Exception:
        if not replace_head:
            raise
        # The head TODO is graded on its own: assemble the model without the student's constructor.
        model = cls.__new__(cls)
        nn.Module.__init__(model)
        model.backbone, model.rpn = backbone, rpn
        model.num_classes = int(ctor_kwargs["num_classes"])
        model.roi_size = tuple(ctor_kwargs.get("roi_size", (7, 7)))
        model.batch_size_per_image = int(ctor_kwargs["batch_size_per_image"])
        model.generator = None
    if replace_head:
        model.roi_stem = nn.Identity()
        model.cls_pred, model.box_pred = _linear(weights, "cls_pred"), _linear(weights, "box_pred")
        model._roi_features = replay_roi_features(moved)
    else:
        model.to(next(iter(feats.values())).device)
        load_weights(model, weights, "FasterRCNN", prefixes=("roi_stem.", "cls_pred.", "box_pred."))
    return model


def frcnn_head(
    pkg: ModuleType,
    inputs: dict[str, Tensor],
    ctor_kwargs: dict[str, Any],
    strides: dict[str, int],
    device: str = "auto",
) -> dict[str, Tensor]:
    """The student's head: constructor (structure + reference weights) and ``_roi_features``.

    Inputs: ``w.<name>`` head weights, ``feats.<level>`` Tensor[B, c, H, W], ``roi_boxes``
    Tensor[P, 4] XYXY, ``roi_image_ids`` and ``roi_level_ids`` Tensor[P] int64, ``roi_input``
    Tensor[Q, c, S_h, S_w].
    Returns: ``cls`` Tensor[Q, C+1] and ``box`` Tensor[Q, 4C] (the head on ``roi_input``) and
    ``roi_feats`` Tensor[P, c, S_h, S_w] (the student's ``_roi_features``).
    """
    dev = resolve_device(device)
    moved = {k: v.to(dev) for k, v in inputs.items()}
    model = _build_detector(pkg, moved, ctor_kwargs, strides, replace_head=False).eval()
    outputs: dict[str, Tensor] = {}
    with torch.no_grad():
        features = model.roi_stem(moved["roi_input"])
        outputs["cls"] = model.cls_pred(features)
        outputs["box"] = model.box_pred(features)
        outputs["roi_feats"] = model._roi_features(
            group(moved, "feats"), moved["roi_boxes"], moved["roi_image_ids"], moved["roi_level_ids"]
        )
    return _finish(outputs, dev)


def frcnn_losses(
    pkg: ModuleType,
    inputs: dict[str, Tensor],
    ctor_kwargs: dict[str, Any],
    strides: dict[str, int],
    device: str = "auto",
) -> dict[str, Tensor]:
    """Training forward of the student's FasterRCNN: replayed features, proposals and RPN losses.

    Inputs: as :func:`frcnn_head` (no ``roi_input``) plus ``images`` Tensor[B, 3, H, W],
    ``gt_boxes`` Tensor[B, G, 5], ``loss_rpn_obj``/``loss_rpn_box`` (0-d, passed through).
    Returns the four losses and ``grad.<param>`` of their sum w.r.t. the head parameters.
    """
    dev = resolve_device(device)
    moved = {k: v.to(dev) for k, v in inputs.items()}
    model = _build_detector(pkg, moved, ctor_kwargs, strides, replace_head=True).train()
    with _patched(pkg.detector, sample_rpn_training=deterministic_sampler):
        result = model(moved["images"], moved["gt_boxes"])
    outputs: dict[str, Tensor] = {}
    for key in ("loss_rpn_obj", "loss_rpn_box", "loss_cls", "loss_box"):
        if not isinstance(result, Mapping) or key not in result:
            raise ProbeError(f"FasterRCNN.forward in training mode returned no '{key}'")
        outputs[key] = result[key]
    _require_tensors(outputs)
    total = outputs["loss_cls"] + outputs["loss_box"]
    params = {f"{n}.{p}": t for n in ("cls_pred", "box_pred") for p, t in getattr(model, n).named_parameters()}
    if total.requires_grad:
        grads = torch.autograd.grad(total, list(params.values()), allow_unused=True)
        for (name, tensor), grad in zip(params.items(), grads):
            outputs[f"grad.{name}"] = torch.zeros_like(tensor) if grad is None else grad
    return _finish(outputs, dev)


def frcnn_inference(
    pkg: ModuleType,
    inputs: dict[str, Tensor],
    ctor_kwargs: dict[str, Any],
    strides: dict[str, int],
    score_thresh: float,
    nms_thresh: float,
    device: str = "auto",
) -> dict[str, Tensor]:
    """Eval forward of the student's FasterRCNN on one image with replayed features and proposals.

    Returns ``boxes`` Tensor[N, 4] XYXY, ``classes`` Tensor[N] int64, ``scores`` Tensor[N].
    """
    dev = resolve_device(device)
    moved = {k: v.to(dev) for k, v in inputs.items()}
    model = _build_detector(pkg, moved, ctor_kwargs, strides, replace_head=True).eval()
    result = model(moved["images"], test_score_thresh=score_thresh, test_nms_thresh=nms_thresh)
    if not isinstance(result, (tuple, list)) or len(result) != 3:
        raise ProbeError("FasterRCNN.forward in eval mode must return (pred_boxes, pred_classes, pred_scores)")
    outputs = {"boxes": result[0], "classes": result[1], "scores": result[2]}
    return _finish(outputs, dev)
