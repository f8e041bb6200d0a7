"""``rcnn-kit grade --explain``: the instructor's report of inputs, expected and received values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from autograder.__main__ import main as autograder_main
from autograder.compare import Fail, assert_close
from autograder.explain import EXPLAIN_MD, EXPLAIN_TENSORS, differences, record_failure, write_explain
from autograder.sandbox import StudentError
from corpus_build import build_submission, load_entries
from test_cli import work_dir  # noqa: F401  (a folder sandboxed children can pass through)

EXPECTED = torch.tensor([[0.25, 0.5], [0.75, 1.0]])


def failed(actual: torch.Tensor) -> Fail:
    with pytest.raises(Fail) as info:
        assert_close(actual, EXPECTED, tol=1e-6, what="iou(boxes1, boxes2)", inputs={"boxes1": torch.ones(2, 4) * 3})
    return info.value


def test_report_shows_inputs_expected_received_and_largest_differences(tmp_path: Path) -> None:
    actual = EXPECTED.clone()
    actual[1, 0] = 0.5
    fail = failed(actual)
    error = StudentError("exception", "IndexError: shown", "IndexError", instructor_message="index 4 is out of bounds")
    records = [
        record_failure("iou", "test_iou.py::test_iou_matches_reference[a]", str(fail), fail),
        record_failure("deltas_get", "test_deltas.py::case[b]", str(error), error),
    ]
    paths = write_explain(records, tmp_path, "Submission: s.zip")
    assert [p.name for p in paths] == [EXPLAIN_MD, EXPLAIN_TENSORS]
    text = (tmp_path / EXPLAIN_MD).read_text()
    assert "instructor only" in text and "Submission: s.zip" in text
    assert f"Student saw: {fail}" in text
    assert "| expected | (2, 2) | torch.float32 | 0.25 | 1 | 0.625 |" in text
    assert "- (1, 0): 0.75 -> 0.5" in text
    assert "| `boxes1` | (2, 4) | torch.float32 | 3 | 3 | 3 |" in text
    assert "index 4 is out of bounds" in text and "IndexError" in text
    saved = torch.load(tmp_path / EXPLAIN_TENSORS, weights_only=True)
    case = saved["test_iou.py::test_iou_matches_reference[a]"]
    assert torch.equal(case["expected"], EXPECTED) and torch.equal(case["received"], actual)
    assert torch.equal(case["inputs"]["boxes1"], torch.ones(2, 4) * 3)


def test_differences_of_other_shapes_show_the_first_elements() -> None:
    assert differences(torch.arange(3.0), torch.arange(5.0)) == [
        "shapes differ; first elements: expected [0, 1, 2], received [0, 1, 2, 3, 4]"
    ]


def test_grade_explain_writes_the_report_beside_results_json_only(work_dir: Path) -> None:
    entry = next(e for e in load_entries("buggy") if e.name == "iou_plus_one")
    submission = build_submission(entry, work_dir / "sub" / "faster_rcnn")
    results = work_dir / "out" / "results.json"
    argv = ["grade", str(submission.parent), "--results", str(results), "--skip-overfit", "--device", "cpu",
            "-k", "test_iou_"]
    assert autograder_main([*argv, "--explain"]) == 0
    report = (results.parent / EXPLAIN_MD).read_text()
    assert report.count("## iou: ") >= 5 and "Student saw:" in report and "| expected |" in report
    saved = torch.load(results.parent / EXPLAIN_TENSORS, weights_only=True)
    assert all({"expected", "received", "inputs"} <= set(case) for case in saved.values())
    student_view = json.dumps(json.loads(results.read_text()))
    assert "| expected |" not in student_view and "explain" not in student_view
    (results.parent / EXPLAIN_MD).unlink()
    assert autograder_main(argv) == 0  # without the flag nothing is written
    assert not (results.parent / EXPLAIN_MD).exists()
