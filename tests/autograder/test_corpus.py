"""Grade the corpus of correct and buggy submissions (tests/autograder/corpus/).

Every entry is checked in process by :mod:`check_driver` on every rubric group that loads
one of its changed files: a correct entry gets full marks there; a buggy entry loses
points on exactly the rubric ids its expect.toml names, with the expected feedback, and
keeps full marks on the others (each bug costs points once).

The real runner (sandboxed child processes, about 3 s of start-up per group) grades the
first correct entry on every unit check and one buggy entry per rubric id on its own
group; with ``RCNN_CORPUS_FULL=1`` it grades every entry (about 10 minutes on 2 CPU cores).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from autograder.runner import GradeSettings, load_rubric, run_checks
from check_driver import check_items, run_direct
from corpus_build import REFERENCE_DIR, CorpusEntry, build_submission, load_entries

RUBRIC = {entry.id: entry for entry in load_rubric(Path(__file__).resolve().parents[2] / "autograder" / "rubric.toml")}
UNIT_IDS = [rid for rid, entry in RUBRIC.items() if entry.kind == "unit"]
CORRECT = load_entries("correct")
BUGGY = load_entries("buggy")
#: The issue asks for at least this many buggy submissions.
MIN_BUGGY = 25
#: Set to 1 to grade every corpus entry with the real runner, not only the representatives.
FULL_ENV = "RCNN_CORPUS_FULL"
FULL = os.environ.get(FULL_ENV, "") == "1"


def representatives(entries: list[CorpusEntry]) -> list[CorpusEntry]:
    """All entries when FULL, else one entry per distinct ``lose`` tuple (``representative = true`` first)."""
    if FULL:
        return entries
    seen: dict[tuple[str, ...], CorpusEntry] = {}
    for entry in sorted(entries, key=lambda e: not e.representative):
        if not entry.requires_cuda:
            seen.setdefault(entry.lose, entry)
    return list(seen.values())


def keyword_for(rubric_ids: list[str]) -> str:
    """pytest -k expression selecting the checks of ``rubric_ids`` (check names start with ``test_<id>_``)."""
    return " or ".join(f"test_{rid}_" for rid in rubric_ids)


def groups_loading(modules: set[str]) -> list[str]:
    """Unit rubric ids whose child loads one of the student's ``modules``."""
    return [rid for rid in UNIT_IDS if set(RUBRIC[rid].student_modules) & modules]


def grade_real(submission: Path, rubric_ids: list[str]) -> dict[str, tuple[int, int, list[str]]]:
    """Grade ``rubric_ids`` with the real runner: ``{id: (passed, counted, failure lines)}``.

    The runner makes (and removes) its own scratch folder in the system temp dir: the
    sandbox user must be able to enter it, which pytest's private tmp_path does not allow.
    """
    files = {path.stem: path for path in submission.glob("*.py")}
    settings = GradeSettings(reference_dir=REFERENCE_DIR, skip_overfit=True, keyword=keyword_for(rubric_ids))
    run = run_checks(settings, files)
    assert not run.collect_errors, run.collect_errors
    notes = [note for g in run.groups for note in g.instructor_notes]
    assert not notes, "grader errors:\n" + "\n".join(notes)
    return {g.entry.id: (g.passed, g.counted, list(g.failures)) for g in run.groups if g.entry.id in rubric_ids}


def test_corpus_is_complete_and_builds(tmp_path: Path) -> None:
    assert len(BUGGY) >= MIN_BUGGY
    assert len(CORRECT) >= 2
    names = [e.name for e in [*CORRECT, *BUGGY]]
    assert len(set(names)) == len(names)
    for entry in BUGGY:
        assert entry.lose and set(entry.lose) <= set(UNIT_IDS), f"{entry.name}: lose={entry.lose}"
    for entry in [*CORRECT, *BUGGY]:  # every edit still applies to the current reference
        submission = build_submission(entry, tmp_path / entry.kind / entry.name)
        assert {p.stem for p in submission.glob("*.py")} >= entry.touched_modules
        for module in entry.touched_modules:
            assert (submission / f"{module}.py").read_text() != (REFERENCE_DIR / f"{module}.py").read_text()


def test_rubric_totals_100_points_with_checks_for_every_unit_entry() -> None:
    assert sum(entry.points for entry in RUBRIC.values()) == pytest.approx(100.0)
    assert {rubric for rubric, *_ in check_items()} - {"overfit"} == set(UNIT_IDS)
    for rid in UNIT_IDS:  # never the module under test from the reference
        assert not set(RUBRIC[rid].student_modules) & set(RUBRIC[rid].reference_modules)


def test_check_names_select_their_rubric_group() -> None:
    """keyword_for() relies on every check function being named test_<its rubric id>_..."""
    items = check_items()
    for rubric, name, _, _ in items:
        if rubric in UNIT_IDS:
            assert name.startswith(f"test_{rubric}_"), name
            others = [rid for rid in UNIT_IDS if rid != rubric and name.startswith(f"test_{rid}_")]
            assert not others, f"{name} also matches {others}"


def check_in_process(entry: CorpusEntry, tmp_path: Path, ref) -> None:
    """The in-process part: lose exactly ``entry.lose`` (with the feedback), full marks elsewhere."""
    submission = build_submission(entry, tmp_path / "submission")
    groups = groups_loading(entry.touched_modules)
    assert set(entry.lose) <= set(groups), f"{entry.name}: lose={entry.lose} but it changes {entry.touched_modules}"
    (tmp_path / "direct").mkdir()
    results = run_direct(submission, tmp_path / "direct", ref, groups)
    for rid in groups:
        lost = [(name, message) for name, passed, message in results[rid] if not passed]
        if rid in entry.lose:
            assert lost, f"{entry.name}: no points lost on {rid}"
        else:
            assert not lost, f"{entry.name} lost points on {rid}: {lost}"
    if entry.feedback:
        shown = [message for rid in entry.lose for _, passed, message in results[rid] if not passed]
        assert any(entry.feedback in line for line in shown), f"{entry.name}: no failure mentions {entry.feedback!r}: {shown}"


@pytest.mark.parametrize("entry", [*CORRECT, *BUGGY], ids=[e.name for e in [*CORRECT, *BUGGY]])
def test_corpus_entry_in_process(entry: CorpusEntry, tmp_path: Path, ref) -> None:
    if entry.requires_cuda and not torch.cuda.is_available():
        pytest.skip("this bug shows only when the student's code runs on a GPU")
    check_in_process(entry, tmp_path, ref)


#: Without FULL: the correct entry that changes the most modules.
CORRECT_REAL = CORRECT if FULL else [max(CORRECT, key=lambda e: len(e.touched_modules))]


@pytest.mark.parametrize("entry", CORRECT_REAL, ids=[e.name for e in CORRECT_REAL])
def test_correct_submission_gets_full_marks_from_the_runner(entry: CorpusEntry, tmp_path: Path) -> None:
    submission = build_submission(entry, tmp_path / "submission")
    results = grade_real(submission, UNIT_IDS)
    for rid in UNIT_IDS:
        passed, counted, failures = results[rid]
        assert counted > 0 and passed == counted, f"{entry.name} lost points on {rid}: {failures}"


BUGGY_REAL = representatives(BUGGY)


@pytest.mark.parametrize("entry", BUGGY_REAL, ids=[e.name for e in BUGGY_REAL])
def test_buggy_submission_loses_points_in_the_runner(entry: CorpusEntry, tmp_path: Path) -> None:
    if entry.requires_cuda and not torch.cuda.is_available():
        pytest.skip("this bug shows only when the student's code runs on a GPU")
    submission = build_submission(entry, tmp_path / "submission")
    results = grade_real(submission, list(entry.lose))
    for rid in entry.lose:
        passed, counted, failures = results[rid]
        assert counted > 0 and passed < counted, f"{entry.name}: no points lost on {rid}"
        assert len(failures) == counted - passed
    expected = entry.runner_feedback or entry.feedback
    if expected:
        shown = [line for rid in entry.lose for line in results[rid][2]]
        assert any(expected in line for line in shown), f"{entry.name}: no failure mentions {expected!r}: {shown}"


def test_representatives_cover_every_unit_check() -> None:
    assert {rid for entry in representatives(BUGGY) for rid in entry.lose} == set(UNIT_IDS)
