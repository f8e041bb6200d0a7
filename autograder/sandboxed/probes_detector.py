"""Probes of ``detector.FasterRCNN`` (run in the sandboxed child, like :mod:`autograder.sandboxed.probes`).

The detector runs on a replay backbone (fixed features) and a replay RPN (fixed proposals
and RPN losses), so the student's RPN never runs here. The head check loads the reference's
weights into the student's ``roi_stem``/``cls_pred``/``box_pred``; the loss and inference
probes install the specified head modules (reference weights) and the specified RoIAlign
(:func:`fixed_roi_features`), so that a bug in the head costs points only in the head check.

The sandbox copies this file beside ``probes.py`` into the child, where the ``autograder``
package does not exist: hence the fallback import below.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

from .probes import (
    ProbeError, Replay, _finish, _patched, _require_tensors, _weights, deterministic_sampler, group,
    load_weights, resolve_device,
)

# ----------------------------------------------------------------------------------------

#: RoIAlign settings of the specification (FasterRCNN._roi_features).
ROI_ALIGNED = True
ROI_SAMPLING_RATIO = -1


def fixed_roi_features(
    model: nn.Module, feats_per_fpn_level: dict[str, Tensor], boxes: Tensor, image_ids: Tensor, level_ids: Tensor
) -> Tensor:
    """The specified ``FasterRCNN._roi_features``, installed on the student's model by the
    loss and inference probes so that a bug in the student's version costs points only in
    the head check.

    Args:
        model: the detector (for ``backbone.fpn_strides`` and ``roi_size``).
        feats_per_fpn_level: ``{level: Tensor[B, c, H, W]}``.
        boxes: Tensor[P, 4] XYXY boxes in image pixels.
        image_ids: Tensor[P] int64, the image of each box.
        level_ids: Tensor[P] int64, position of each box's level in ``feats_per_fpn_level``.

    Returns:
        Tensor[P, c, S_h, S_w], row i pooled from box i.
    """
    from torchvision.ops import roi_align

    first = next(iter(feats_per_fpn_level.values()))
    out = first.new_zeros(boxes.shape[0], first.shape[1], *model.roi_size)  # (P, c, S_h, S_w)
    rois = torch.cat([image_ids[:, None].to(boxes), boxes], dim=1)  # (P, 5) rows (image, x1, y1, x2, y2)
    for level_id, (level, feats) in enumerate(feats_per_fpn_level.items()):
        rows = (level_ids == level_id).nonzero().squeeze(1)
        if rows.numel():
            out[rows] = roi_align(
                feats, rois[rows], tuple(model.roi_size), spatial_scale=1.0 / model.backbone.fpn_strides[level],
                sampling_ratio=ROI_SAMPLING_RATIO, aligned=ROI_ALIGNED,
            )
    return out


def build_head_modules(weights: Mapping[str, Tensor]) -> dict[str, nn.Module]:
    """``roi_stem``, ``cls_pred``, ``box_pred`` with the specified structure, from reference weights.

    ``roi_stem`` is (Conv2d 3x3 padding 1, ReLU) per stem layer, then Flatten; the two
    predictors are Linear layers. Shapes are read from ``weights`` (``roi_stem.<i>.weight``,
    ``cls_pred.weight``, ...).
    """
    layers: list[nn.Module] = []
    index = 0
    while f"roi_stem.{index}.weight" in weights:
        weight = weights[f"roi_stem.{index}.weight"]
        conv = nn.Conv2d(weight.shape[1], weight.shape[0], kernel_size=weight.shape[-1], padding=weight.shape[-1] // 2)
        layers += [conv, nn.ReLU()]
        index += 2
    layers.append(nn.Flatten())
    roi_stem = nn.Sequential(*layers)
    cls_w, box_w = weights["cls_pred.weight"], weights["box_pred.weight"]
    modules = {
        "roi_stem": roi_stem,
        "cls_pred": nn.Linear(cls_w.shape[1], cls_w.shape[0]),
        "box_pred": nn.Linear(box_w.shape[1], box_w.shape[0]),
    }
    for name, module in modules.items():
        load_weights(module, {k[len(name) + 1:]: v for k, v in weights.items() if k.startswith(name + ".")}, name)
    return {name: module.to(cls_w.device) for name, module in modules.items()}


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

    With ``replace_head`` the head modules are the specified ones with reference weights and
    ``_roi_features`` is :func:`fixed_roi_features` (loss and inference checks); if the
    student's constructor raises, the model is then assembled without it.
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
        for name, module in build_head_modules(weights).items():
            setattr(model, name, module)
        model._roi_features = lambda *args: fixed_roi_features(model, *args)
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
