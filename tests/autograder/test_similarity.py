"""The similarity report (``rcnn-kit similarity``, ``grade-all --similarity``).

The batch (similarity_batch.py) holds four independent styles, a renamed copy, a copy with
functions moved and commuting statements swapped, a copy of the reference and a copy of a
public solution: every copy pair must rank above every independent pair.
"""

from __future__ import annotations

import csv
import io
import os
import random
import textwrap
import tokenize
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import similarity_batch as batch_tools
from autograder.__main__ import main as autograder_main
from autograder.similarity import (
    CSV_FIELDS, CSV_NAME, DEFAULT_THRESHOLD, HTML_NAME, NOISE_TOKENS, NOTICE, SimilarityReport, Vocabulary,
    all_pairs, build_document, compare, fingerprint, run_similarity,
)
from autograder.similarity_regions import (
    PLACEHOLDER, STRING_KEY, StubModel, extract_regions, load_stub_model, submission_regions,
)
from rcnn_kit.course import STUDENT_MODULES, reference_dir

#: Measured on the batch (2026-11-30): copies score 0.95-1.00, independent pairs at most 0.12.
MIN_COPY_SCORE, MAX_INDEPENDENT_SCORE = 0.9, 0.25
#: CPU budget (all processes) for 40 generated submissions, a fifth of a minute on 2 cores.
MAX_CPU_SECONDS_40 = 24.0


@pytest.fixture(scope="module")
def model() -> StubModel:
    return load_stub_model(reference_dir())


@pytest.fixture(scope="module")
def stubs() -> dict[str, str]:
    return batch_tools.stubs()


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return batch_tools.build_batch(tmp_path_factory.mktemp("similarity_batch"))


@pytest.fixture(scope="module")
def report(batch: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> SimilarityReport:
    submissions, public = batch
    return run_similarity(submissions, tmp_path_factory.mktemp("similarity_out"), against_dir=public, threshold=0.0)


def _documents(paths: list[Path], model: StubModel, scratch: Path) -> list:
    """Fingerprinted documents of ``paths`` (no boilerplate removal)."""
    vocabulary = Vocabulary()
    documents = []
    for number, path in enumerate(paths):
        regions, note = submission_regions(path, model, scratch / str(number))
        assert regions, note
        documents.append(build_document(path.name, regions, vocabulary))
        fingerprint(documents[-1], np.zeros(0, dtype=np.int64))
    return documents


def _code_tokens(code: str) -> list[str]:
    layout = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
    return [t.string for t in tokenize.generate_tokens(io.StringIO(code).readline) if t.type not in layout]


def test_every_copy_pair_ranks_above_every_independent_pair(report: SimilarityReport) -> None:
    assert len(report.documents) == 9 and set(report.skipped) == {"stub_only"}
    assert report.compared == 9 * 8 // 2 - 1  # the two public solutions are not compared with each other
    scores = {frozenset({p.a, p.b}): p.score for p in report.pairs}
    copies = [scores.get(pair, 0.0) for pair in batch_tools.COPY_PAIRS]
    independent = [score for pair, score in scores.items() if pair not in batch_tools.COPY_PAIRS]
    assert min(copies) > max(independent)
    assert min(copies) >= MIN_COPY_SCORE and max(independent) <= MAX_INDEPENDENT_SCORE, (copies, max(independent))
    assert {frozenset({p.a, p.b}) for p in report.pairs[: len(copies)]} == batch_tools.COPY_PAIRS
    listed = {frozenset({p.a, p.b}) for p in report.pairs if p.score >= DEFAULT_THRESHOLD}
    assert listed == batch_tools.COPY_PAIRS


def test_csv_and_html(report: SimilarityReport) -> None:
    with open(report.csv_path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == CSV_FIELDS and len(rows) == len(report.pairs)
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    renamed = next(r for r in rows if {r["submission_a"], r["submission_b"]} == {"A.zip", "A_renamed"})
    functions = dict(item.rsplit(" ", 1) for item in renamed["functions"].split("; "))
    assert {"iou.iou", "nms.nms", "anchors.get_fpn_location_coords", "deltas.rcnn_apply_deltas_to_anchors"} <= set(functions)
    assert all(int(count) >= NOISE_TOKENS for count in functions.values())
    assert int(renamed["matched_tokens_a"]) > 0.9 * int(renamed["tokens_a"])
    reordered = next(p for p in report.pairs if {p.a, p.b} == {"C", "C_reordered"})
    assert {"iou._pairwise_intersection", "deltas._to_cxcywh", "rpn._conv_relu_stack"} <= {n for n, _ in reordered.functions}
    page = report.html_path.read_text(encoding="utf-8")
    assert NOTICE in page
    assert "size_p" in page and "area_a" in page  # the renamed copy and its original, as the students wrote them
    assert "highlight-red" in page and "highlight-green" in page
    assert "Returns:" not in page  # docstrings are not shown


def test_renamed_copy_and_moved_functions_normalise_to_the_same_code(
    model: StubModel, stubs: dict[str, str], tmp_path: Path
) -> None:
    original = batch_tools.write_submission(tmp_path / "A", batch_tools.fill(stubs, batch_tools.A), "package")
    renamed_blocks = {k: batch_tools.rename(textwrap.dedent(v), batch_tools.A_RENAMES) for k, v in batch_tools.A.items()}
    renamed = batch_tools.write_submission(tmp_path / "A2", batch_tools.fill(stubs, renamed_blocks), "flat")
    moved_modules = batch_tools.fill(stubs, batch_tools.C, batch_tools.C_HELPERS)
    moved_modules["deltas"] = batch_tools.move_function_last(moved_modules["deltas"], "rcnn_get_deltas_from_anchors")
    moved_modules["iou"] = batch_tools.move_function_last(moved_modules["iou"], "iou")
    helpers = batch_tools.write_submission(tmp_path / "C", batch_tools.fill(stubs, batch_tools.C, batch_tools.C_HELPERS))
    moved = batch_tools.write_submission(tmp_path / "C2", moved_modules)
    a, a2, c, c2 = _documents([original, renamed, helpers, moved], model, tmp_path / "scratch")
    assert a.code == a2.code and a.text != a2.text
    assert c.code == c2.code
    assert [name for _, _, name in c.regions][:4] == ["iou.iou", "iou._area", "iou._pairwise_intersection", "nms.nms"]


@pytest.mark.parametrize("key", ["iou#0", "anchors#0", "rpn#1"])
def test_region_is_exactly_the_students_block(model: StubModel, stubs: dict[str, str], key: str) -> None:
    module = key.split("#")[0]
    text = batch_tools.fill(stubs, {key: batch_tools.B[key]})[module]
    (region,) = extract_regions(text, module, model)
    assert [region.text[t.start : t.end] for t in region.tokens] == _code_tokens(textwrap.dedent(batch_tools.B[key]))


def _edit_given_code(text: str) -> str:
    """``text`` with every comment reworded and a comment added at the end of every logical line."""
    lines = text.splitlines(keepends=True)
    edits = []
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.COMMENT:
            edits.append((tok.start, tok.end, "# reworded by the student"))
        elif tok.type == tokenize.NEWLINE and tok.string:
            edits.append((tok.start, tok.start, "  # edited"))
    for (row, col), (_, end_col), new in reversed(edits):
        lines[row - 1] = lines[row - 1][:col] + new + lines[row - 1][end_col:]
    return "".join(lines)


def test_stub_and_given_code_are_never_student_code(model: StubModel, stubs: dict[str, str], tmp_path: Path) -> None:
    for module in STUDENT_MODULES:
        assert extract_regions(stubs[module], module, model) == []
        assert extract_regions(_edit_given_code(stubs[module]), module, model) == []
    # Two submissions that share all the given code (one with it reworded) and implement iou each
    # their own way share no fingerprint at all.
    submissions = tmp_path / "submissions"
    loops = batch_tools.fill(stubs, {"iou#0": batch_tools.A["iou#0"]})
    unbind = {m: _edit_given_code(t) for m, t in batch_tools.fill(stubs, {"iou#0": batch_tools.D["iou#0"]}).items()}
    batch_tools.write_submission(submissions / "loops", loops)
    batch_tools.write_submission(submissions / "<i>unbind", unbind, "flat")
    batch_tools.write_submission(submissions / "given_only", {m: _edit_given_code(t) for m, t in stubs.items()})
    report = run_similarity(submissions, tmp_path / "out", threshold=0.0)
    assert set(report.skipped) == {"given_only"} and report.compared == 1 and report.pairs == []
    assert "<i>unbind" not in report.html_path.read_text(encoding="utf-8")


def test_normalisation_keeps_the_api_and_hides_the_students_names(model: StubModel, stubs: dict[str, str]) -> None:
    block = """
        my_inter = torch.clamp(boxes1[:, 2] - boxes2[:, 0], min=0).sum(dim=1)
        self_made = my_inter.my_field
        return f"{my_inter}" + 'x'
    """
    (region,) = extract_regions(batch_tools.fill(stubs, {"iou#0": block})["iou"], "iou", model)
    keys = [t.key for t in region.tokens]
    V, S = PLACEHOLDER, STRING_KEY
    assert keys == [V, "=", "torch", ".", "clamp", "(", "boxes1", "[", ":", ",", "2", "]", "-", "boxes2", "[", ":", ",",
                    "0", "]", ",", "min", "=", "0", ")", ".", "sum", "(", "dim", "=", "1", ")",
                    V, "=", V, ".", V, "return", S, "+", S]
    assert [region.text[t.start : t.end] for t in region.tokens if t.key == S] == ['f"{my_inter}"', "'x'"]


def test_every_definition_of_a_helper_is_compared(model: StubModel, stubs: dict[str, str]) -> None:
    helper = "def _half(x):\n    return x * 0.5\n\n\ndef _half(x):\n    return x / 2\n"
    text = batch_tools.fill(stubs, {"iou#0": "return _half(boxes1) @ boxes2.T"}, {"iou": helper})["iou"]
    regions = extract_regions(text, "iou", model)
    assert [r.name for r in regions] == ["iou.iou", f"iou._half@{text.splitlines().index('def _half(x):') + 1}", "iou._half"]
    assert [r.todo for r in regions] == [True, False, False]


@pytest.mark.parametrize("block, expected", [
    ("total = boxes1.sum( +", ["total", "=", "boxes1", ".", "sum", "(", "+"]),
    ("return " + "-" * 20_000 + "1", ["return", *["-"] * 20_000, "1"]),  # too deep for the parser
])
def test_a_module_that_does_not_parse_is_one_region_without_the_stub(
    model: StubModel, stubs: dict[str, str], block: str, expected: list[str]
) -> None:
    text = batch_tools.fill(stubs, {"iou#0": block})["iou"]
    (region,) = extract_regions(text, "iou", model)
    assert region.name == "iou.<unparsed>"
    assert [region.text[t.start : t.end] for t in region.tokens] == expected


def test_comparison_equals_copydetects_compare_files(batch: tuple[Path, Path], model: StubModel, tmp_path: Path) -> None:
    from copydetect.detector import compare_files

    submissions, _ = batch
    paths = sorted(p for p in submissions.iterdir() if p.name != "stub_only")
    documents = _documents(paths, model, tmp_path)

    def as_copydetect(d):  # the fields of copydetect's CodeFingerprint that compare_files reads
        by_hash: dict[int, list[int]] = {}
        for position, value in zip(d.positions.tolist(), d.hashes.tolist()):
            by_hash.setdefault(value, []).append(position)
        return SimpleNamespace(k=NOISE_TOKENS, hashes=set(by_hash), hash_idx=by_hash, filtered_code=d.code,
                               token_coverage=d.coverage, offsets=np.array([]))

    fingerprints = [as_copydetect(d) for d in documents]
    seen = 0
    for i, j, in_a, in_b in all_pairs(documents):
        overlap, (share_a, share_b), _ = compare_files(fingerprints[i], fingerprints[j])
        mine = compare(documents[i], documents[j])
        assert (mine.matched_a, mine.share_a, mine.share_b) == pytest.approx((overlap, share_a, share_b), abs=1e-12)
        assert np.array_equal(in_a, np.sort(in_a)) and len(in_a) <= len(documents[i].positions)
        seen += 1
    assert seen == len(documents) * (len(documents) - 1) // 2


def test_cli_similarity(batch: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    submissions, public = batch
    out = tmp_path / "report"
    assert autograder_main(["similarity", str(submissions), "--against", str(public), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert NOTICE in printed and "A_renamed" in printed and "skipped stub_only" in printed
    assert (out / CSV_NAME).is_file() and (out / HTML_NAME).is_file()
    assert autograder_main(["similarity", str(submissions), "--threshold", "1.5", "--out", str(out)]) == 2
    assert autograder_main(["similarity", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "--threshold" in capsys.readouterr().err


def test_grade_all_similarity_never_changes_the_gradebook(
    batch: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import autograder.cli as cli

    def fake_grade(submission: Path, results: Path, argv: list[str], timeout_s: float) -> dict:
        return {"score": float(len(submission.name)), "tests": []}

    monkeypatch.setattr(cli, "_grade_one", fake_grade)
    submissions, _ = batch
    plain, flagged = tmp_path / "plain.csv", tmp_path / "flagged.csv"
    assert autograder_main(["grade-all", str(submissions), "--out", str(plain)]) == 0
    results = tmp_path / "results"
    assert autograder_main(["grade-all", str(submissions), "--out", str(flagged), "--results-dir", str(results),
                            "--similarity"]) == 0
    assert plain.read_text() == flagged.read_text()
    with open(results / "similarity" / CSV_NAME, newline="") as fh:
        listed = {frozenset({r["submission_a"], r["submission_b"]}) for r in csv.DictReader(fh)}
    assert listed == {pair for pair in batch_tools.COPY_PAIRS if not any(n.startswith("public:") for n in pair)}


def test_speed_of_a_generated_batch(tmp_path: Path) -> None:
    """40 submissions in a few CPU-seconds (benchmarks/similarity_speed.py times 200)."""
    rng = random.Random(0)
    stubs, reference = batch_tools.stubs(), batch_tools.reference_blocks()
    (tmp_path / "subs").mkdir()
    for number in range(40):
        batch_tools.write_submission(tmp_path / "subs" / f"s{number}", batch_tools.mutated(rng, stubs, reference),
                                     ("zip", "package", "flat")[number % 3])
    import copydetect.detector  # noqa: F401  (imports are not what this measures)

    load_stub_model(reference_dir())  # imports torch for its API names, once per process
    before = os.times()
    report = run_similarity(tmp_path / "subs", tmp_path / "out")
    after = os.times()
    cpu = sum(getattr(after, f) - getattr(before, f) for f in ("user", "system", "children_user", "children_system"))
    assert len(report.documents) + len(report.skipped) == 40 and report.compared == 40 * 39 // 2
    # Measured 4.0 CPU-seconds (2-core VM, load 10); 200 submissions must fit in a minute on 2 cores.
    assert cpu < MAX_CPU_SECONDS_40, f"{cpu:.1f} CPU-seconds for 40 submissions"


def test_a_submission_that_fails_to_load_is_listed_not_fatal(
    stubs: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import autograder.similarity as similarity

    for name, style in (("ok1", batch_tools.A), ("ok2", batch_tools.B), ("broken", batch_tools.C)):
        batch_tools.write_submission(tmp_path / "subs" / name, batch_tools.fill(stubs, style))
    real = similarity.submission_regions

    def failing(source: Path, model: StubModel, scratch: Path):
        if source.name == "broken":
            raise OSError("disk went away")
        return real(source, model, scratch)

    monkeypatch.setattr(similarity, "submission_regions", failing)
    report = run_similarity(tmp_path / "subs", tmp_path / "out")
    assert report.skipped == {"broken": "not compared: OSError: disk went away"}
    assert report.documents == ["ok1", "ok2"] and report.compared == 1
