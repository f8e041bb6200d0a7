"""Probe of the overfit smoke test: train the student's whole detector and detect on its training images.

Runs inside the sandboxed child (copied there as ``probes_overfit.py`` next to ``probes.py``)
and, for the kit's own tests and the calibration benchmark, in-process on the reference.
It only trains and detects; it scores nothing. The grader
(:mod:`autograder.overfit_check`) holds the ground truth, computes mAP from the raw detections
returned here and draws the feedback pictures itself, so nothing the student's code
could tamper with decides the grade.

Output keys (flat ``dict[str, Tensor]``, all on the CPU):

- ``loss.<name>``: Tensor[T] float64, the value of each loss at every iteration, plus
  ``loss.total`` (their sum), ``loss.lr`` and ``loss.grad_norm`` (see
  :class:`rcnn_kit.engine.TrainResult`);
- ``det.<i>.boxes`` Tensor[N_i, 4] float32 XYXY pixels, ``det.<i>.classes`` Tensor[N_i]
  int64 in ``0..C-1``, ``det.<i>.scores`` Tensor[N_i] float32, for training image ``i``;
- ``meta.train_ms`` (0-d int64): wall time of the training loop in milliseconds;
  ``meta.cuda`` (0-d int64): 1 when the model trained on a GPU.

The runtime modules are imported at module level on purpose: the child imports its probe
modules before it drops privileges, when every library file is still readable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import ModuleType

import torch
from torch import Tensor
from torch.utils.data import Dataset

from rcnn_kit.build import build_detector
from rcnn_kit.engine import TrainConfig, predict, train_detector
from rcnn_kit.engine.utils import seed_everything

#: Prefixes of the output keys (see the module docstring).
LOSS_PREFIX = "loss."
DETECTION_PREFIX = "det."
#: Columns of a GT row: (x1, y1, x2, y2, class).
GT_COLUMNS = 5


class TensorDetectionSet(Dataset):
    """Items ``(name, image Tensor[3, S, S], gt_boxes Tensor[G, 5])`` from two stacked tensors.

    The layout of :mod:`rcnn_kit.data.datasets`, so :func:`rcnn_kit.engine.train_detector`
    and :func:`rcnn_kit.engine.predict` accept it.

    Args:
        images: Tensor[N, 3, S, S] float32, ImageNet-normalised.
        gt_boxes: Tensor[N, G, 5] rows (x1, y1, x2, y2, class), XYXY pixels, padding rows all -1.

    Raises:
        ValueError: the shapes do not match that description.
    """

    def __init__(self, images: Tensor, gt_boxes: Tensor) -> None:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images: expected Tensor[N, 3, S, S], got shape {tuple(images.shape)}")
        if gt_boxes.dim() != 3 or gt_boxes.shape[0] != images.shape[0] or gt_boxes.shape[2] != GT_COLUMNS:
            raise ValueError(
                f"gt_boxes: expected Tensor[{images.shape[0]}, G, {GT_COLUMNS}], got shape {tuple(gt_boxes.shape)}"
            )
        self.images = images.float()
        self.gt_boxes = gt_boxes.float()

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[str, Tensor, Tensor]:
        return f"train-{index}", self.images[index], self.gt_boxes[index]


def overfit_train(
    pkg: ModuleType,
    inputs: Mapping[str, Tensor],
    *,
    num_classes: int,
    iterations: int,
    batch_size: int,
    lr: float,
    warmup_iters: int,
    grad_clip_norm: float,
    seed: int,
    score_thresh: float,
    nms_thresh: float,
    threads: int = 0,
    post_nms_topk: int | None = None,
    device: str = "auto",
) -> dict[str, Tensor]:
    """Build ``pkg``'s FasterRCNN on a random-init backbone, train it, detect on the training images.

    Args:
        pkg: the ``faster_rcnn`` package (the student's, whole).
        inputs: ``{"images": Tensor[N, 3, S, S], "gt_boxes": Tensor[N, G, 5]}`` (see
            :class:`TensorDetectionSet`).
        num_classes: C, object classes.
        iterations: SGD steps.
        batch_size: images per step.
        lr: base learning rate (after the linear warm-up).
        warmup_iters: iterations of linear warm-up.
        grad_clip_norm: global gradient-norm clip.
        seed: seeds the weight init, the sampling and the data order.
        score_thresh: inference score threshold.
        nms_thresh: inference class-specific NMS threshold.
        threads: torch intra-op threads for the run (0 keeps the process's setting);
            capped at the number of CPUs.
        post_nms_topk: the RPN's ``post_nms_topk`` (proposals kept per level and image);
            None keeps the RPN's default.
        device: ``"auto"`` (CUDA when the process sees a GPU), ``"cpu"`` or ``"cuda"``.

    Returns:
        The flat output dict described in the module docstring.
    """
    if threads > 0:
        torch.set_num_threads(min(threads, os.cpu_count() or 1))
    dataset = TensorDetectionSet(inputs["images"], inputs["gt_boxes"])
    seed_everything(seed)  # the backbone's and heads' random init come from the global generator
    rpn_kwargs = {} if post_nms_topk is None else {"post_nms_topk": post_nms_topk}
    model = build_detector(pkg, num_classes, pretrained=False, **rpn_kwargs)
    config = TrainConfig(
        max_iters=iterations,
        batch_size=batch_size,
        lr=lr,
        warmup_iters=warmup_iters,
        grad_clip_norm=grad_clip_norm,
        log_period=iterations,
        device=device,
        seed=seed,
    )
    result = train_detector(model, dataset, config, progress=False)
    predictions = predict(model, dataset, score_thresh=score_thresh, nms_thresh=nms_thresh, device=device)

    outputs: dict[str, Tensor] = {
        f"{LOSS_PREFIX}{name}": torch.tensor(values, dtype=torch.float64) for name, values in result.history.items()
    }
    for prediction in predictions:
        key = f"{DETECTION_PREFIX}{prediction.index}"
        outputs[f"{key}.boxes"] = prediction.boxes.float()
        outputs[f"{key}.classes"] = prediction.classes.long()
        outputs[f"{key}.scores"] = prediction.scores.float()
    outputs["meta.train_ms"] = torch.tensor(round(result.wall_time_s * 1000), dtype=torch.int64)
    outputs["meta.cuda"] = torch.tensor(int(result.device.startswith("cuda")), dtype=torch.int64)
    return outputs
