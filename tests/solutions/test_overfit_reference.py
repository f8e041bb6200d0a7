"""End to end on a GPU: the reference detector overfits a few synthetic images with the runtime.

On the CPU, the same property is checked where it matters for grades: the Gradescope bundle
test (tests/autograder/test_gradescope_bundle.py) grades the reference in the sandbox with the
shipped CPU profile and requires the overfit test to pass; the calibration record in
autograder/profiles/cpu.toml has 20 of 20 seeds passing. This file adds the GPU run.

Uses the runtime directly (no sandbox, no grader code in the loop): build the reference
detector on a random-init backbone, train it with the overfit profile's schedule, detect
on the training images and score them with the runtime's mAP. The profiles and their
thresholds are the shipped profile files (autograder/profiles/, docs/OVERFIT_CALIBRATION.md).
"""

from __future__ import annotations

import time
from pathlib import Path
from types import ModuleType

import pytest
import torch

from autograder.overfit_profile import PROFILES_DIR, OverfitProfile, load_profile
from rcnn_kit.build import build_detector
from rcnn_kit.data import SYNTHETIC_CLASSES, VOCJsonDataset, make_synthetic_voc
from rcnn_kit.engine import TrainConfig, mean_average_precision, predict, train_detector
from rcnn_kit.engine.utils import seed_everything

#: The mean total loss of the last iterations must fall below this fraction of the first ones.
LOSS_DROP_RATIO = 0.5
#: Iterations averaged at each end of the loss history.
WINDOW = 10

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
GPU_PROFILE = load_profile(PROFILES_DIR / "cuda.toml")


def overfit_reference(ref: ModuleType, profile: OverfitProfile, root: Path) -> tuple[list[float], dict[str, object], float]:
    """Train the reference with ``profile``; (total loss per iteration, mAP summary, seconds)."""
    data = profile.data
    assert data.kind == "synthetic", "this test trains on the synthetic images only"
    data_dir = make_synthetic_voc(root, num_images=data.num_images, image_size=data.image_size, seed=data.seed,
                                  max_objects=data.max_objects, val_fraction=0.0)
    dataset = VOCJsonDataset(data_dir / "train.json", image_size=data.image_size, class_names=SYNTHETIC_CLASSES)
    seed_everything(profile.seed)
    model = build_detector(ref, len(SYNTHETIC_CLASSES), pretrained=False, post_nms_topk=profile.post_nms_topk)
    config = TrainConfig(max_iters=profile.iterations, batch_size=profile.batch_size, lr=profile.lr,
                         warmup_iters=profile.warmup_iters, grad_clip_norm=profile.grad_clip_norm,
                         device=profile.device, seed=profile.seed, log_period=profile.iterations)
    start = time.perf_counter()
    result = train_detector(model, dataset, config, progress=False)
    predictions = predict(model, dataset, score_thresh=profile.score_thresh, nms_thresh=profile.nms_thresh,
                          device=profile.device)
    seconds = time.perf_counter() - start
    return result.history["total"], mean_average_precision(predictions, SYNTHETIC_CLASSES), seconds


def _check(ref: ModuleType, profile: OverfitProfile, tmp_path: Path) -> None:
    total, summary, seconds = overfit_reference(ref, profile, tmp_path)
    start, end = sum(total[:WINDOW]) / WINDOW, sum(total[-WINDOW:]) / WINDOW
    assert end < LOSS_DROP_RATIO * start, f"total loss {start:.3f} -> {end:.3f} did not fall by half"
    assert summary["map_50"] >= profile.pass_map, (
        f"train-set mAP@0.5 {summary['map_50']:.3f} < {profile.pass_map} after {profile.iterations} iterations "
        f"({seconds:.0f} s); per class {summary['per_class_ap_50']}"
    )


@pytest.mark.slow
@pytest.mark.gpu
@requires_cuda
def test_reference_overfits_with_the_gpu_profile(ref: ModuleType, tmp_path: Path) -> None:
    _check(ref, GPU_PROFILE, tmp_path)
