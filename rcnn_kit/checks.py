"""Notebook sanity checks a student runs from the assignment notebook.

:func:`check` compares a result with the expected value using the course's
relative error (:func:`rel_error`) and prints ``PASS`` or ``FAIL`` with a hint
instead of stopping at a bare ``assert``; :func:`check_at_least` does the same for
a score that must reach a floor (the overfit checks); :func:`require_all` turns a
cell's failures into one readable error (so nbgrader scores the cell).

:func:`seed_conv_weights_` gives a student's network fixed weights whatever order
its layers were created in, so a check can compare its losses with values computed
once from the reference. :func:`rpn_top_proposals` turns an RPN's best proposals
into class-agnostic predictions, so its recall on the overfit images can be judged.
The submission zip lives in :mod:`rcnn_kit.handin`.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from rcnn_kit.engine.batching import split_item
from rcnn_kit.engine.evaluate import ImagePrediction, split_gt
from rcnn_kit.engine.utils import resolve_device

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


def check_at_least(name: str, value: float, minimum: float, hint: str = "") -> bool:
    """Print ``PASS``/``FAIL`` for a score that must reach ``minimum`` (e.g. a training-set mAP).

    Args:
        name: what is measured, e.g. ``"train mAP@0.5 on the 8 overfit images"``.
        value: the measured score; NaN fails.
        minimum: the smallest passing value.
        hint: printed on failure: what to look at.

    Returns:
        True when ``value >= minimum``.
    """
    passed = not math.isnan(value) and value >= minimum
    print(f"{'PASS' if passed else 'FAIL'}  {name}: {value:.3f} (need >= {minimum:.2f})")
    if not passed and hint:
        print(f"      hint: {hint}")
    return passed


#: Standard deviation of the fixed conv weights of :func:`seed_conv_weights_` (the course's RPN init).
CHECK_INIT_STD = 0.01


def seed_conv_weights_(modules: Sequence[nn.Module], seed: int, std: float = CHECK_INIT_STD) -> None:
    """Overwrite every ``Conv2d`` in ``modules`` with weights drawn from a seeded generator.

    The weights depend only on ``seed``, on the order of ``modules`` and on each
    module's own layer order, never on the global random state or on the order
    in which a student created the layers; biases become 0.

    Args:
        modules: e.g. ``[pred_net.stem_rpn, pred_net.pred_obj, pred_net.pred_box]``.
        seed: seed of the generator.
        std: standard deviation of the normal weights.

    Raises:
        ValueError: ``modules`` holds no ``Conv2d`` at all.
    """
    generator = torch.Generator().manual_seed(seed)
    convs = [layer for module in modules for layer in module.modules() if isinstance(layer, nn.Conv2d)]
    if not convs:
        raise ValueError(f"modules: expected modules holding Conv2d layers, got {[type(m).__name__ for m in modules]}")
    with torch.no_grad():
        for conv in convs:
            weight = torch.randn(conv.weight.shape, generator=generator) * std
            conv.weight.copy_(weight.to(conv.weight))
            if conv.bias is not None:
                conv.bias.zero_()


@torch.no_grad()
def rpn_top_proposals(
    backbone: nn.Module, rpn: nn.Module, dataset: Dataset, top_k: int, device: str | torch.device = "auto"
) -> list[ImagePrediction]:
    """The RPN's ``top_k`` best proposals per level of every image, as class-agnostic predictions.

    Proposals come from ``rpn(backbone(image), backbone.fpn_strides)`` in eval mode,
    by decreasing objectness within each level (the RPN's contract). Every box gets
    class 0 and, per level, a descending score ``1 - rank / top_k``; the GT boxes also
    get class 0, so :func:`rcnn_kit.engine.coverage_recall` measures whether the best
    proposals found each object.

    Args:
        backbone: ``DetectorBackboneWithFPN`` (``forward(Tensor[1, 3, H, W]) -> {level: Tensor[1, C, h, w]}``).
        rpn: the student's ``RPN``.
        dataset: items ``(path, image Tensor[3, H, W], gt Tensor[40, 5])``.
        top_k: proposals kept per level and image.
        device: where to run.

    Returns:
        One :class:`rcnn_kit.engine.ImagePrediction` per image with ``Tensor[K, 4]`` XYXY boxes.

    Raises:
        ValueError: ``top_k`` is not positive.
    """
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k <= 0:
        raise ValueError(f"top_k: expected a positive int, got {top_k!r}")
    torch_device = resolve_device(device)
    modes = (backbone.training, rpn.training)
    backbone.to(torch_device).eval()
    rpn.to(torch_device).eval()
    results = []
    try:
        for index in range(len(dataset)):
            image, gt = split_item(dataset[index])
            feats = backbone(image.unsqueeze(0).to(torch_device))  # (3, H, W) -> (1, 3, H, W)
            proposals = rpn(feats, backbone.fpn_strides)["proposals"]  # {level: [Tensor[K, 4]]}
            boxes = [level_boxes[0][:top_k].float().cpu() for level_boxes in proposals.values()]
            ranks = [1.0 - torch.arange(b.shape[0], dtype=torch.float32) / top_k for b in boxes]
            gt_boxes, _ = split_gt(gt)
            all_boxes = torch.cat(boxes).reshape(-1, 4)  # (sum K, 4)
            results.append(
                ImagePrediction(
                    index=index,
                    boxes=all_boxes,
                    classes=torch.zeros(all_boxes.shape[0], dtype=torch.int64),
                    scores=torch.cat(ranks),
                    gt_boxes=gt_boxes.cpu(),
                    gt_classes=torch.zeros(gt_boxes.shape[0], dtype=torch.int64),
                )
            )
    finally:
        backbone.train(modes[0])
        rpn.train(modes[1])
    return results
