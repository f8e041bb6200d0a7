"""results.json: scoring, Gradescope format, validation, atomic writes, rubric loading."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest

from autograder.results import (
    INSTRUCTOR_LOG,
    ResultsError,
    build_results,
    validate_results,
    write_artifacts,
    write_results,
)
from autograder.scoring import CaseTally
from autograder.runner import CheckRun, GroupResult, RubricEntry, load_rubric

IOU = RubricEntry("iou", "IoU", 6.0, ("iou",), (), 60.0)
NMS = RubricEntry("nms", "NMS", 7.0, ("nms",), ("iou",), 60.0)
OVERFIT = RubricEntry("overfit", "Overfit", 20.0, ("iou", "nms"), (), 600.0, kind="overfit")


def _run() -> CheckRun:
    iou = GroupResult(IOU, passed=3, failed=1, failures=["iou(boxes1, boxes2): values differ"],
                      student_output="--- stdout ---\nSTUDENT PRINTED THIS", tally=CaseTally(main_passed=3, main_failed=1))
    nms = GroupResult(NMS, passed=0, failed=2, failures=["nms: crashed", "nms: crashed"],
                      instructor_notes=["TRACEBACK OF A GRADER ERROR"], tally=CaseTally(main_failed=2))
    overfit = GroupResult(OVERFIT, skipped_reason="skipped (--skip-overfit)")
    return CheckRun([iou, nms, overfit], ignored={"stale": 2}, collect_errors=[], pytest_exit_code=1, seconds=1.0)


def test_scores_follow_passed_fraction_and_sum_to_total() -> None:
    results = build_results(_run(), ["missing module files: rpn.py"], execution_time=12.5)
    validate_results(results)
    by_tag = {t["tags"][0]: t for t in results["tests"] if t.get("tags")}
    assert by_tag["iou"]["score"] == pytest.approx(6.0 * 3 / 4)
    assert by_tag["nms"]["score"] == 0.0
    assert by_tag["overfit"]["score"] == 0.0 and "skipped" in by_tag["overfit"]["output"]
    assert results["score"] == pytest.approx(sum(t["score"] for t in results["tests"]))
    assert [t["max_score"] for t in results["tests"] if t.get("tags")] == [6.0, 7.0, 20.0]
    assert "missing module files: rpn.py" in results["output"]
    assert by_tag["nms"]["output"].count("nms: crashed") == 1  # repeated failures listed once


@pytest.mark.parametrize(
    "tally, not_run, reason",
    [
        (CaseTally(main_failed=3, edge_passed=2), None, "no main case passed"),
        (CaseTally(main_passed=1, main_failed=2, not_implemented=1), None, "NotImplementedError"),
        (CaseTally(main_passed=2), "not run: time budget", "not run: time budget"),
    ],
    ids=["edge_cases_alone", "not_implemented", "deadline"],
)
def test_scoring_rules_give_zero_with_the_reason(tally: CaseTally, not_run: str | None, reason: str) -> None:
    group = GroupResult(IOU, passed=tally.passed, failed=tally.counted - tally.passed, tally=tally, not_run_reason=not_run)
    results = build_results(CheckRun([group], {}, [], 1, 1.0), [])
    validate_results(results)
    entry = results["tests"][0]
    assert entry["score"] == 0.0 and entry["status"] == "failed" and reason in entry["output"]


def test_student_output_and_grader_errors_are_hidden() -> None:
    results = build_results(_run(), [])
    visible = "\n".join([results["output"]] + [t["output"] for t in results["tests"] if t["visibility"] != "hidden"])
    hidden = [t for t in results["tests"] if t["visibility"] == "hidden"]
    assert [t["name"] for t in hidden] == [INSTRUCTOR_LOG]
    assert hidden[0]["max_score"] == 0.0
    for secret in ("STUDENT PRINTED THIS", "TRACEBACK OF A GRADER ERROR"):
        assert secret not in visible
        assert secret in hidden[0]["output"]
    assert results["stdout_visibility"] == "hidden"


def test_infrastructure_error_scores_zero_with_an_explanation() -> None:
    results = build_results(None, [], infrastructure_error="Traceback: boom",
                            max_points={"iou": ("IoU", 6.0), "nms": ("NMS", 7.0)})
    validate_results(results)
    assert results["score"] == 0.0
    assert "autograder itself failed" in results["output"]
    assert [t["max_score"] for t in results["tests"]] == [6.0, 7.0, 0.0]
    assert "Traceback: boom" in results["tests"][-1]["output"]


def _valid() -> dict:
    return build_results(_run(), [])


@pytest.mark.parametrize(
    "breakage",
    [
        lambda r: r.pop("tests"),
        lambda r: r.update(score=math.nan),
        lambda r: r.update(score="12"),
        lambda r: r.update(visibility="public"),
        lambda r: r["tests"][0].update(score=100.0),
        lambda r: r["tests"][0].update(score=-1.0),
        lambda r: r["tests"][0].pop("name"),
        lambda r: r["tests"][0].update(status="ok"),
        lambda r: r["tests"][0].update(tags="iou"),
        lambda r: r["tests"][0].update(max_score=math.inf),
    ],
    ids=["no_tests", "nan_score", "string_score", "bad_visibility", "score_above_max", "negative_score",
         "no_name", "bad_status", "tags_not_list", "infinite_max"],
)
def test_validation_rejects_what_gradescope_would(breakage) -> None:
    results = copy.deepcopy(_valid())
    breakage(results)
    with pytest.raises(ResultsError):
        validate_results(results)


def test_write_is_atomic_and_refuses_invalid_results(tmp_path: Path) -> None:
    target = tmp_path / "results" / "results.json"
    write_results(_valid(), target)
    first = target.read_text()
    assert json.loads(first)["tests"][0]["name"] == "IoU"
    bad = _valid()
    bad["score"] = math.nan
    with pytest.raises(ResultsError):
        write_results(bad, target)
    assert target.read_text() == first
    assert [p.name for p in target.parent.iterdir()] == ["results.json"]  # no temporary left behind


def test_load_rubric_validates_fields(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[[check]]\nid = "iou"\nname = "IoU"\npoints = 5\nstudent_modules = ["iou"]\n')
    [entry] = load_rubric(good)
    assert (entry.id, entry.points, entry.reference_modules, entry.kind) == ("iou", 5.0, (), "unit")
    cases = {
        "missing": '[[check]]\nid = "iou"\npoints = 5\nstudent_modules = ["iou"]\n',
        "duplicate": '[[check]]\nid = "a"\nname = "A"\npoints = 1\nstudent_modules = ["iou"]\n' * 2,
        "overlap": '[[check]]\nid = "a"\nname = "A"\npoints = 1\nstudent_modules = ["iou"]\nreference_modules = ["iou"]\n',
        "kind": '[[check]]\nid = "a"\nname = "A"\npoints = 1\nstudent_modules = ["iou"]\nkind = "other"\n',
    }
    for label, text in cases.items():
        bad = tmp_path / f"{label}.toml"
        bad.write_text(text)
        with pytest.raises(ValueError, match=str(bad.name)):
            load_rubric(bad)
    with pytest.raises(FileNotFoundError):
        load_rubric(tmp_path / "absent.toml")


def test_repository_rubric_loads() -> None:
    from autograder.runner import DEFAULT_RUBRIC

    entries = load_rubric(DEFAULT_RUBRIC)
    assert entries and all(e.points >= 0 for e in entries)


def test_feedback_markdown_and_artifacts_reach_the_results(tmp_path: Path) -> None:
    run = _run()
    group = run.groups[0]
    group.feedback_md.append("![loss](data:image/png;base64,AAAA)")
    group.artifacts.append(("../../escape/loss.png", b"\x89PNG fake"))
    results = build_results(run, [])
    validate_results(results)
    entry = next(t for t in results["tests"] if t["tags"] == [group.entry.id])
    assert entry["output_format"] == "md" and entry["output"].endswith("![loss](data:image/png;base64,AAAA)")
    written = write_artifacts(run, tmp_path / "artifacts")
    # The artifact keeps only its base name: a check cannot write outside the folder.
    assert written == [tmp_path / "artifacts" / f"{group.entry.id}_loss.png"]
    assert written[0].read_bytes() == b"\x89PNG fake"
