"""Tests of the overfit smoke test's grader side (autograder/overfit_check.py, overfit_feedback.py, probes_overfit.py, the check).

Fast tests feed hand-made probe outputs to the validation and scoring, whose oracle is
the ground truth itself (GT boxes returned as detections must score mAP 1). The slow
tests run the real check through the runner with a real sandbox child: the reference
must pass with the CPU profile, a detector whose inference keeps nothing must fail.
"""

from __future__ import annotations

import base64
import dataclasses
import math
import shutil
import tomllib
from pathlib import Path

import pytest
import torch

from autograder import overfit, overfit_feedback
from autograder.overfit_check import (
    CPU_PROFILE,
    GPU_PROFILE,
    OverfitOutputError,
    TrainingSet,
    in_process_probe,
    make_training_set,
    parse_probe_output,
    run_overfit,
    score_run,
    select_profile,
)
from autograder.overfit_feedback import (
    IMAGE_SIGNATURES,
    PNG_SIGNATURE,
    THUMBNAIL_MAX_BYTES,
    draw_pictures,
    feedback_markdown,
    image_data_uri,
)
from autograder.results import MAX_OUTPUT_CHARS
from rcnn_kit.engine.evaluate import split_gt
from rcnn_kit.impl import STUDENT_MODULES

REPO_ROOT = Path(__file__).resolve().parents[2]
REFERENCE_DIR = REPO_ROOT / "solutions" / "faster_rcnn"
#: A small profile for fast tests: 2 images of 64 px (the check's logic does not depend on size).
TINY_PROFILE = dataclasses.replace(CPU_PROFILE, num_images=2, image_size=64, iterations=40)


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory: pytest.TempPathFactory) -> TrainingSet:
    return make_training_set(TINY_PROFILE, tmp_path_factory.mktemp("overfit_data"))


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


def test_select_profile_by_device(monkeypatch: pytest.MonkeyPatch) -> None:
    calibrated_gpu = dataclasses.replace(GPU_PROFILE, calibrated=True)
    monkeypatch.setitem(overfit.PROFILES, "cuda", calibrated_gpu)
    assert select_profile("cpu") is CPU_PROFILE
    assert select_profile("cuda") is calibrated_gpu
    assert select_profile("auto") is (calibrated_gpu if torch.cuda.is_available() else CPU_PROFILE)
    with pytest.raises(ValueError, match="device: .*'tpu'"):
        select_profile("tpu")


def test_an_uncalibrated_profile_is_never_used_for_grading(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(overfit.PROFILES, "cuda", dataclasses.replace(GPU_PROFILE, calibrated=False))
    assert select_profile("cuda") is CPU_PROFILE


@pytest.mark.parametrize(("field", "value"), [("pass_map", 0.0), ("image_size", 100), ("iterations", 0), ("device", "gpu")])
def test_profile_rejects_bad_values(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(CPU_PROFILE, **{field: value})


def test_profiles_fit_their_budgets_and_the_rubric() -> None:
    rubric = {c["id"]: c for c in tomllib.loads((REPO_ROOT / "autograder" / "rubric.toml").read_text())["check"]}
    entry = rubric["overfit"]
    assert entry["kind"] == "overfit"
    assert sorted(entry["student_modules"]) == sorted(STUDENT_MODULES) and not entry["reference_modules"]
    assert entry["timeout_s"] >= max(CPU_PROFILE.timeout_s, GPU_PROFILE.timeout_s)
    assert CPU_PROFILE.timeout_s <= 300 and GPU_PROFILE.timeout_s <= 60  # the targets
    assert CPU_PROFILE.device == "cpu" and GPU_PROFILE.device == "cuda"


def test_cpu_profile_objects_are_all_reachable_by_an_anchor(ref, tmp_path: Path) -> None:
    """The CPU profile's data seed was chosen so that every object has an RPN foreground anchor.

    Oracle: torchvision's ``box_iou`` between the GT boxes and the course's default anchors
    (stride scale 8, ratios 0.5/1/2 on p3-p5); every GT box must reach the RPN's foreground
    IoU (0.6) with some anchor, so a correct RPN can learn every object of the set.
    """
    from torchvision.ops import box_iou

    data = make_training_set(CPU_PROFILE, tmp_path)
    strides = {"p3": 8, "p4": 16, "p5": 32}
    shapes = {level: (1, 1, CPU_PROFILE.image_size // s, CPU_PROFILE.image_size // s) for level, s in strides.items()}
    locations = ref.anchors.get_fpn_location_coords(shapes, strides)
    anchors = torch.cat(list(ref.anchors.generate_fpn_anchors(locations, strides, 8).values()))  # (R, 4)
    gt = data.gt_boxes[data.gt_boxes[..., 4] >= 0][:, :4]  # (G, 4) real boxes of all images
    assert gt.shape[0] >= CPU_PROFILE.num_images
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
    short = dataclasses.replace(TINY_PROFILE, iterations=3, warmup_iters=1)
    run, report = run_overfit(in_process_probe(ref), tiny_set, short)
    assert set(run.history) >= {"loss_rpn_obj", "loss_rpn_box", "loss_cls", "loss_box", "total", "lr", "grad_norm"}
    assert all(len(v) == 3 for v in run.history.values())
    assert len(run.detections) == tiny_set.num_images
    assert 0.0 <= report.map_50 <= 1.0 or math.isnan(report.map_50)


# ---------------------------------------------------------------------------- the real check, in a sandbox

#: Grades with the real runner in a fresh interpreter and prints the overfit group's outcome as JSON.
#: A fresh process because the runner's pytest session imports ``autograder/checks/test_overfit.py``
#: by its base name, which this kit session may already hold for another file; it also keeps
#: the runner's process-wide settings (child subreaper) out of the kit's test process.
#: argv: files as JSON, iterations (0: the profile's own), warm-up iterations.
_DRIVER = """
import dataclasses, json, sys
from pathlib import Path
from autograder import overfit
from autograder.runner import GradeSettings, run_checks
files = {name: Path(path) for name, path in json.loads(sys.argv[1]).items()}
iterations, warmup = int(sys.argv[2]), int(sys.argv[3])
if iterations:
    overfit.PROFILES["cpu"] = dataclasses.replace(overfit.CPU_PROFILE, iterations=iterations, warmup_iters=warmup)
run = run_checks(GradeSettings(reference_dir=Path(sys.argv[4]), keyword="test_overfit_smoke"), files)
(group,) = [g for g in run.groups if g.entry.id == "overfit"]
print(json.dumps({"passed": group.passed, "failed": group.failed, "failures": group.failures,
                  "notes": group.instructor_notes, "collect_errors": run.collect_errors,
                  "output": group.student_output[-2000:]}))
"""


def grade_overfit(files: dict[str, Path], iterations: int = 0, warmup: int = 0) -> dict[str, object]:
    """Run the overfit check with the real runner and sandbox on ``files``; its outcome."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "RCNN_KIT_OFFLINE": "1"}
    args = [json.dumps({k: str(v) for k, v in files.items()}), str(iterations), str(warmup), str(REFERENCE_DIR)]
    done = subprocess.run([sys.executable, "-c", _DRIVER, *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert not outcome["collect_errors"] and not outcome["notes"], outcome
    return outcome


@pytest.mark.slow
def test_check_passes_the_reference_in_a_sandbox() -> None:
    outcome = grade_overfit({m: REFERENCE_DIR / f"{m}.py" for m in STUDENT_MODULES})
    assert (outcome["passed"], outcome["failed"]) == (1, 0), outcome


@pytest.mark.slow
def test_check_fails_a_detector_whose_inference_keeps_nothing(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(REFERENCE_DIR, broken)
    detector = broken / "detector.py"
    source = detector.read_text()
    assert source.count("keep = pred_scores > test_score_thresh") == 1
    detector.write_text(source.replace("keep = pred_scores > test_score_thresh", "keep = pred_scores < -1.0"))
    # An inference that keeps nothing fails after any amount of training: a short run tests the
    # grader's path (sandbox, validation, scoring, message); the calibration covers the full profile.
    outcome = grade_overfit({m: broken / f"{m}.py" for m in STUDENT_MODULES}, iterations=10, warmup=5)
    assert (outcome["passed"], outcome["failed"]) == (0, 1), outcome
    assert "mAP@0.5 0.000" in outcome["failures"][0] and "no detections" in outcome["failures"][0]
