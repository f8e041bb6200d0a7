"""``rcnn-kit calibrate-overfit`` (autograder/calibration.py, calibration_report.py, calibration_worker.py).

The pass-mark rule is checked on hand-made score tables (today's CPU record among them); the
command end to end on a VOC-layout subset the test writes, with a couple of iterations: it
writes a profile with the subset's identity and provenance, a plot and a per-run log, and
the overfit check then grades with that profile and subset in a real sandbox.
"""

from __future__ import annotations

import argparse
import json
import math
import tomllib
from pathlib import Path

import pytest

from autograder import calibration
from autograder.calibration_report import REFERENCE, RunRow, choose_threshold, plot_calibration, summary_table
from autograder.overfit_data import subset_sha256
from autograder.overfit_profile import load_profile
from overfit_helpers import VOC_OBJECTS, grade_overfit, write_voc_subset
from rcnn_kit.course import REFERENCE_DIR, STUDENT_MODULES

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Today's CPU record (docs/OVERFIT_CALIBRATION.md): 20 reference seeds, each broken variant on 2 seeds.
CPU_REFERENCE = [1.0] * 19 + [0.972]
CPU_BROKEN = {
    "anchors_transposed": [0.86, 0.888], "cls_ignores_features": [0.056, 0.132], "cls_labels_shifted": [0.0, 0.0],
    "empty_inference": [0.0, 0.0], "no_box_decoding": [1.0, 1.0], "rpn_loss_zero": [0.224, 0.224],
    "rpn_obj_inverted": [0.0, 0.0],
}


def test_todays_cpu_record_gives_todays_pass_mark() -> None:
    verdict = choose_threshold(CPU_REFERENCE, CPU_BROKEN)
    assert verdict.calibrated and verdict.pass_map == pytest.approx(0.6)
    assert verdict.margin == pytest.approx(0.372) and verdict.worst_reference == 0.972
    assert verdict.uncaught == ("anchors_transposed", "no_box_decoding")
    assert set(verdict.caught) == set(CPU_BROKEN) - set(verdict.uncaught)


def test_the_pass_mark_keeps_the_margin_on_both_sides() -> None:
    # Midpoint 0.61 rounds to 0.6 (margins 0.11 and 0.1): kept. Midpoint 0.5 with a gap of exactly
    # two margins: 0.5 itself. A gap where rounding to 0.05 would eat a margin falls back to 0.01.
    assert choose_threshold([0.82], {"a": [0.40]}).pass_map == pytest.approx(0.6)
    assert choose_threshold([0.6], {"a": [0.4]}).pass_map == pytest.approx(0.5)
    verdict = choose_threshold([0.7], {"a": [0.46]}, min_margin=0.12)
    assert verdict.pass_map == pytest.approx(0.58) and verdict.margin == pytest.approx(0.12)


@pytest.mark.parametrize(
    ("reference", "broken", "reason"),
    [([0.45, 1.0], {"a": [0.0]}, "does not overfit"), ([1.0], {"a": [0.85], "b": [0.9]}, "catches none")],
)
def test_not_calibrated_when_nothing_separates(reference: list[float], broken: dict, reason: str) -> None:
    verdict = choose_threshold(reference, broken)
    assert not verdict.calibrated and reason in verdict.reason and math.isnan(verdict.margin)
    assert 0.0 < verdict.pass_map <= 1.0  # still a valid profile value, marked uncalibrated


def test_threshold_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="no reference run"):
        choose_threshold([], {})
    with pytest.raises(ValueError, match="min_margin"):
        choose_threshold([1.0], {}, min_margin=0.5)


def _rows() -> list[RunRow]:
    rows = [RunRow(REFERENCE, s, m, 1.0, 2.0, 0.3, 9, 30.0, 35.0, 29.0) for s, m in enumerate(CPU_REFERENCE)]
    for name, maps in CPU_BROKEN.items():
        rows += [RunRow(name, s, m, 0.5, 2.0, 1.0, 3, 31.0, 36.0, 30.0) for s, m in enumerate(maps)]
    return rows + [RunRow("rpn_obj_inverted", 2, 0.0, 0.0, math.nan, math.nan, 0, math.nan, 3.0, 1.0, "ValueError: x")]


def test_summary_table_and_plot(tmp_path: Path) -> None:
    rows = _rows()
    verdict = choose_threshold([r.map_50 for r in rows if r.variant == REFERENCE],
                               {n: [r.map_50 for r in rows if r.variant == n] for n in CPU_BROKEN})
    table = summary_table(rows, verdict)
    assert "| reference | 20 | 0.972 | 1.000 | 20/20 | 30.0 | 0 |" in table
    assert "| rpn_obj_inverted | 3 | 0.000 | 0.000 | 0/3 | 31.0 | 1 |" in table
    assert "Pass mark 0.6" in table and "Not caught: anchors_transposed, no_box_decoding" in table
    path = plot_calibration(rows, verdict, tmp_path / "plots" / "calibration.png", "title")
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and path.stat().st_size > 10_000


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    calibration.register(parser.add_subparsers())
    return parser.parse_args(["calibrate-overfit", *argv])


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--seeds", "0"], "--seeds"), (["--jobs", "0"], "--jobs"), (["--variants", "nope"], "unknown"),
     (["--data", "somewhere", "--num-images", "3"], "only for --data synthetic")],
)
def test_bad_arguments_are_refused(argv: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        calibration.settings_from_args(_args("--device", "cpu", *argv))


def test_module_entry_point_takes_the_command_s_flags(capsys: pytest.CaptureFixture) -> None:
    assert calibration.main(["--device", "cpu", "--seeds", "0"]) == 2
    assert "--seeds: expected at least 1" in capsys.readouterr().err


def test_settings_default_to_the_shipped_profile_and_files_beside_out(tmp_path: Path) -> None:
    settings = calibration.settings_from_args(_args("--device", "cpu", "--out", str(tmp_path / "p.toml"),
                                                    "--num-images", "2", "--variants", "empty_inference"))
    assert settings.base.data.num_images == 2 and settings.base.batch_size == 2 and settings.base.data.sha256 == ""
    assert settings.jobs == 1 and settings.seeds == tuple(range(20)) and settings.variant_seeds == (0, 1)
    assert (settings.plot, settings.runs_log) == (tmp_path / "p.png", tmp_path / "p.runs.jsonl")
    assert settings.variants == ("empty_inference",)


def test_a_worker_that_cannot_run_gives_an_error_row(tmp_path: Path) -> None:
    job = {"variant": REFERENCE, "seed": 0, "package": str(tmp_path), "module_name": "x",
           "profile": str(tmp_path / "no.toml"), "data": str(tmp_path), "image_size": 64,
           "job_file": str(tmp_path / "job.json")}
    row = calibration.run_worker(job, calibration.worker_env("cpu", 1), timeout_s=300)
    assert row.map_50 == 0.0 and row.error is not None and "no.toml" in row.error and row.process_s > 0


@pytest.mark.slow
def test_calibrate_a_voc_subset_then_grade_with_its_profile(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    subset = write_voc_subset(tmp_path / "voc", image_size=64)
    out = tmp_path / "profiles" / "voc.toml"
    code = calibration._cmd_calibrate(_args(
        "--device", "cpu", "--data", str(subset), "--seeds", "1", "--variants", "empty_inference", "--variant-seeds", "1",
        "--jobs", "2", "--iterations", "2", "--warmup-iters", "1", "--out", str(out)))
    printed = capsys.readouterr().out
    # Two iterations overfit nothing: the profile is written, marked uncalibrated, and says why.
    assert code == 1 and "NOT calibrated" in printed
    profile = load_profile(out)
    document = tomllib.loads(out.read_text())
    assert (profile.device, profile.calibrated, profile.iterations) == ("cpu", False, 2)
    assert (profile.data.kind, profile.data.num_images, profile.data.image_size) == ("subset", len(VOC_OBJECTS), 64)
    assert profile.data.sha256 == subset_sha256(subset)
    prov = document["provenance"]
    assert prov["reference_seeds"] == [0] and prov["variant_seeds"] == [0] and prov["jobs"] == 2
    assert prov["torch"] and prov["device_name"] and prov["date"].endswith("Z") and "does not overfit" in prov["reason"]
    assert set(prov["broken_best"]) == {"empty_inference"} and prov["seconds_per_run_median"] > 0
    runs = [json.loads(line) for line in out.with_suffix(".runs.jsonl").read_text().splitlines()]
    assert sorted((r["variant"], r["seed"], r["error"]) for r in runs) == [("empty_inference", 0, None), (REFERENCE, 0, None)]
    assert out.with_suffix(".png").read_bytes().startswith(b"\x89PNG")

    # Grading with it: refused unless forced (uncalibrated); forced, the check trains on the subset.
    reference = REPO_ROOT / REFERENCE_DIR
    outcome = grade_overfit({m: reference / f"{m}.py" for m in STUDENT_MODULES}, profile=out, data=subset, force=True)
    assert outcome["passed"] + outcome["failed"] == 1
    note = outcome["notes"][0]
    assert f"overfit profile {out} (device class cpu, NOT calibrated)" in note and "FORCED" in note
    assert f"overfit subset {subset}: {len(VOC_OBJECTS)} images of 64 px, 20 classes" in note
