"""Tests of the overfit smoke test's grader side (autograder/overfit_check.py, overfit_feedback.py, probes_overfit.py, the check).

Fast tests feed hand-made probe outputs to the validation and scoring, whose oracle is
the ground truth itself (GT boxes returned as detections must score mAP 1). The slow
tests run the real check through the runner with a real sandbox child: the reference
must pass with the CPU profile, a detector whose inference keeps nothing must fail.
"""

from __future__ import annotations

import base64
import math
import shutil
import tomllib
from pathlib import Path

import pytest
import torch

from autograder import overfit_feedback
from autograder.overfit_check import OverfitOutputError, in_process_probe, parse_probe_output, run_overfit, score_run
from autograder.overfit_data import TrainingSet, synthetic_set
from autograder.overfit_feedback import (
    IMAGE_SIGNATURES,
    PNG_SIGNATURE,
    THUMBNAIL_MAX_BYTES,
    draw_pictures,
    feedback_markdown,
    image_data_uri,
)
from autograder.overfit_profile import PROFILES_DIR, OverfitData, OverfitProfile, load_profile, write_profile
from autograder.results import MAX_OUTPUT_CHARS
from overfit_helpers import REPO_ROOT, grade_overfit
from rcnn_kit.course import FPN_STRIDES, REFERENCE_DIR, STUDENT_MODULES
from rcnn_kit.engine.evaluate import split_gt

REFERENCE = REPO_ROOT / REFERENCE_DIR
CPU_PROFILE = load_profile(PROFILES_DIR / "cpu.toml")
CUDA_PROFILE = load_profile(PROFILES_DIR / "cuda.toml")
#: A small profile for fast tests: 2 images of 64 px (the check's logic does not depend on size).
TINY_PROFILE = CPU_PROFILE.replace(data=OverfitData(kind="synthetic", num_images=2, image_size=64, seed=1), iterations=40)


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory: pytest.TempPathFactory) -> TrainingSet:
    return synthetic_set(TINY_PROFILE.data, tmp_path_factory.mktemp("overfit_data"))


def fake_outputs(data: TrainingSet, detections: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
                 total: list[float]) -> dict[str, torch.Tensor]:
    """A probe output with the given detections and a total loss split evenly over two losses."""
    loss = torch.tensor(total, dtype=torch.float64)
    outputs = {"loss.loss_cls": loss / 2, "loss.loss_box": loss / 2, "loss.total": loss,
               "loss.lr": torch.full_like(loss, 0.01), "loss.grad_norm": torch.ones_like(loss)}
    for index, (boxes, classes, scores) in enumerate(detections):
        outputs[f"det.{index}.boxes"] = boxes
        outputs[f"det.{index}.classes"] = classes
        outputs[f"det.{index}.scores"] = scores
    return outputs


def gt_as_detections(data: TrainingSet, shift: float = 0.0) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Every GT box as a detection of its class with score 1, moved right by ``shift`` pixels."""
    detections = []
    for index in range(data.num_images):
        boxes, classes = split_gt(data.gt_boxes[index])
        boxes = boxes + torch.tensor([shift, 0.0, shift, 0.0])
        detections.append((boxes, classes, torch.ones(classes.shape[0])))
    return detections


#: Iterations of the hand-made loss histories (long enough for separate start and end windows).
ITERS = TINY_PROFILE.iterations
FALLING = [4.0 - 3.5 * i / (ITERS - 1) for i in range(ITERS)]
FLAT = [2.0] * ITERS


# ---------------------------------------------------------------------------- profiles


def test_shipped_profiles_fit_their_budgets_and_the_rubric() -> None:
    rubric = {c["id"]: c for c in tomllib.loads((REPO_ROOT / "autograder" / "rubric.toml").read_text())["check"]}
    entry = rubric["overfit"]
    assert entry["kind"] == "overfit"
    assert sorted(entry["student_modules"]) == sorted(STUDENT_MODULES) and not entry["reference_modules"]
    assert entry["timeout_s"] >= max(CPU_PROFILE.timeout_s, CUDA_PROFILE.timeout_s)
    assert CPU_PROFILE.timeout_s <= 300 and CUDA_PROFILE.timeout_s <= 60  # the targets
    assert (CPU_PROFILE.device, CUDA_PROFILE.device) == ("cpu", "cuda") and CPU_PROFILE.calibrated


@pytest.mark.parametrize("profile", [CPU_PROFILE, CUDA_PROFILE], ids=["cpu", "cuda"])
def test_profile_objects_are_all_reachable_by_an_anchor(profile: OverfitProfile, ref, tmp_path: Path) -> None:
    """The shipped profiles' data seeds were chosen so that every object has an RPN foreground anchor.

    Oracle: torchvision's ``box_iou`` between the GT boxes and the course's default anchors
    (stride scale 8, ratios 0.5/1/2 on p3-p5); every GT box must reach the RPN's foreground
    IoU (0.6) with some anchor, so a correct RPN can learn every object of the set.
    """
    from torchvision.ops import box_iou

    data = synthetic_set(profile.data, tmp_path)
    assert data.sha256 == profile.data.sha256  # the images the profile was calibrated on
    strides = dict(FPN_STRIDES)
    size = profile.data.image_size
    shapes = {level: (1, 1, size // s, size // s) for level, s in strides.items()}
    locations = ref.anchors.get_fpn_location_coords(shapes, strides)
    anchors = torch.cat(list(ref.anchors.generate_fpn_anchors(locations, strides, 8).values()))  # (R, 4)
    gt = data.gt_boxes[data.gt_boxes[..., 4] >= 0][:, :4]  # (G, 4) real boxes of all images
    assert gt.shape[0] >= profile.data.num_images
    assert (box_iou(gt, anchors).max(dim=1).values >= 0.6).all()


# ---------------------------------------------------------------------------- validation


def test_parse_accepts_well_formed_output(tiny_set: TrainingSet) -> None:
    run = parse_probe_output(fake_outputs(tiny_set, gt_as_detections(tiny_set), FALLING), 2, 3, ITERS)
    assert run.history["total"] == pytest.approx(FALLING)
    assert len(run.detections) == 2


def test_parse_names_the_iteration_of_a_non_finite_loss(tiny_set: TrainingSet) -> None:
    losses = list(FALLING)
    losses[7] = math.nan
    with pytest.raises(OverfitOutputError, match=f"at iteration 8 of {ITERS}"):
        parse_probe_output(fake_outputs(tiny_set, gt_as_detections(tiny_set), losses), 2, 3, ITERS)


@pytest.mark.parametrize("problem", ["class_out_of_range", "float_classes", "missing_image", "nan_box", "short_history"])
def test_parse_rejects_malformed_output(tiny_set: TrainingSet, problem: str) -> None:
    detections = gt_as_detections(tiny_set)
    outputs = fake_outputs(tiny_set, detections, FALLING)
    if problem == "class_out_of_range":
        outputs["det.0.classes"] = torch.full_like(detections[0][1], 3)
    elif problem == "float_classes":
        outputs["det.0.classes"] = detections[0][1].float()
    elif problem == "missing_image":
        del outputs["det.1.scores"]
    elif problem == "nan_box":
        outputs["det.1.boxes"] = torch.full_like(detections[1][0], math.nan)
    elif problem == "short_history":
        outputs["loss.total"] = outputs["loss.total"][:5]
    with pytest.raises(OverfitOutputError):
        parse_probe_output(outputs, 2, 3, ITERS)


# ---------------------------------------------------------------------------- scoring


def test_ground_truth_as_detections_scores_one_and_passes(tiny_set: TrainingSet) -> None:
    run = parse_probe_output(fake_outputs(tiny_set, gt_as_detections(tiny_set), FALLING), 2, 3, ITERS)
    report = score_run(run, tiny_set, TINY_PROFILE, wall_time_s=1.0)
    assert report.map_50 == pytest.approx(1.0)
    assert report.recall_50 == pytest.approx(1.0)
    assert report.passed and report.hint == ""
    assert report.loss_start == pytest.approx(sum(FALLING[:10]) / 10)


def test_poor_detections_fail_with_a_hint_that_fits_the_symptoms(tiny_set: TrainingSet) -> None:
    # Boxes moved by their full width overlap their GT with IoU 0: mAP 0 whatever the loss did.
    far = [(b + torch.stack([b[:, 2] - b[:, 0], torch.zeros(len(b)), b[:, 2] - b[:, 0], torch.zeros(len(b))], 1), c, s)
           for b, c, s in gt_as_detections(tiny_set)]
    fell = score_run(parse_probe_output(fake_outputs(tiny_set, far, FALLING), 2, 3, ITERS), tiny_set, TINY_PROFILE, 1.0)
    flat = score_run(parse_probe_output(fake_outputs(tiny_set, far, FLAT), 2, 3, ITERS), tiny_set, TINY_PROFILE, 1.0)
    empty = [(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), torch.zeros(0))] * 2
    none = score_run(parse_probe_output(fake_outputs(tiny_set, empty, FALLING), 2, 3, ITERS), tiny_set, TINY_PROFILE, 1.0)
    assert fell.map_50 == pytest.approx(0.0) and not fell.passed
    assert "losses fell but the detections are poor" in fell.hint
    assert "did not fall" in flat.hint
    assert none.num_detections == 0 and "no detections" in none.hint
    assert f"needs >= {TINY_PROFILE.pass_map:.2f}" in fell.summary()


def test_pictures_are_pngs_and_fit_in_the_markdown(tiny_set: TrainingSet, tmp_path: Path) -> None:
    run = parse_probe_output(fake_outputs(tiny_set, gt_as_detections(tiny_set, shift=3.0), FALLING), 2, 3, ITERS)
    report = score_run(run, tiny_set, TINY_PROFILE, 1.0)
    pictures = draw_pictures(run, tiny_set, tmp_path)
    assert set(pictures) == {overfit_feedback.LOSS_PICTURE, overfit_feedback.DETECTIONS_PICTURE}
    for path in pictures.values():
        assert path.read_bytes().startswith(PNG_SIGNATURE)
    text = feedback_markdown(report, pictures)
    uris = [line.split("](", 1)[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]
    assert len(uris) == 2
    for uri in uris:
        header, payload = uri.split(",", 1)
        mime = header.removeprefix("data:").removesuffix(";base64")
        picture = base64.b64decode(payload)
        assert picture.startswith(IMAGE_SIGNATURES[mime]) and len(picture) <= THUMBNAIL_MAX_BYTES
    assert report.summary() in text
    assert len(text) <= MAX_OUTPUT_CHARS  # results.py keeps at most this much of one test's output


def test_image_data_uri_refuses_other_files() -> None:
    with pytest.raises(ValueError, match="not a PNG or JPEG"):
        image_data_uri(b"GIF89a....")
    assert image_data_uri(PNG_SIGNATURE + bytes(THUMBNAIL_MAX_BYTES)) is None
    assert image_data_uri(PNG_SIGNATURE).startswith("data:image/png;base64,")


# ---------------------------------------------------------------------------- the probe, in process


def test_probe_output_passes_validation(ref, tiny_set: TrainingSet) -> None:
    """A few iterations of the reference through the probe: every key and shape the grader expects."""
    short = TINY_PROFILE.replace(iterations=3, warmup_iters=1)
    run, report = run_overfit(in_process_probe(ref), tiny_set, short)
    assert set(run.history) >= {"loss_rpn_obj", "loss_rpn_box", "loss_cls", "loss_box", "total", "lr", "grad_norm"}
    assert all(len(v) == 3 for v in run.history.values())
    assert len(run.detections) == tiny_set.num_images
    assert 0.0 <= report.map_50 <= 1.0 or math.isnan(report.map_50)


# ---------------------------------------------------------------------------- the real check, in a sandbox


# The reference passing the check in a sandbox is tests/autograder/test_gradescope_bundle.py's
# reference-scores-100 test (a fresh bundle, the shipped CPU profile).


@pytest.mark.slow
def test_check_fails_a_detector_whose_inference_keeps_nothing(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(REFERENCE, broken)
    detector = broken / "detector.py"
    source = detector.read_text()
    assert source.count("keep = pred_scores > test_score_thresh") == 1
    detector.write_text(source.replace("keep = pred_scores > test_score_thresh", "keep = pred_scores < -1.0"))
    # An inference that keeps nothing fails after any amount of training: a short run tests the
    # grader's path (sandbox, validation, scoring, message); the calibration covers the full profile.
    short = write_profile(CPU_PROFILE.replace(iterations=10, warmup_iters=5), tmp_path / "short.toml")
    outcome = grade_overfit({m: broken / f"{m}.py" for m in STUDENT_MODULES}, profile=short)
    assert (outcome["passed"], outcome["failed"]) == (0, 1), outcome
    assert "mAP@0.5 0.000" in outcome["failures"][0] and "no detections" in outcome["failures"][0]
    assert f"overfit profile {short} (device class cpu" in outcome["notes"][0]
