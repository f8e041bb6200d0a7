"""Similarity report across a batch of submissions: an aid for a person's judgement, never part of a grade.

Each submission (a zip or folder in any layout :func:`autograder.intake.load_submission`
accepts) becomes one document: its student-written regions
(:mod:`autograder.similarity_regions`), one normalised character per token, in a fixed
order (the TODO functions in the stub's order, then the student's helpers sorted by their
normalised code), so moving functions around in a file changes nothing. copydetect
fingerprints each document by winnowing token k-grams, with the normalised stubs as
boilerplate, and compares every pair; a pair's score is the larger of the two shares of
fingerprinted tokens found in the other document.

Outputs in the chosen folder: ``similarity.csv`` (pairs at or above the threshold, best
first, with the functions the matches fall in) and ``similarity.html`` (copydetect's
report: matched code side by side, over the extracted regions with the students' own
identifiers). ``--against DIR`` adds known public solutions (each subfolder or zip one
solution) to compare every submission with.
"""

from __future__ import annotations

import csv
import html
import io
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autograder.intake import load_submission
from autograder.similarity_regions import Region, StubModel, extract_regions, load_stub_model, stub_tokens
from rcnn_kit.course import STUDENT_MODULES, reference_dir, rmtree

#: Printed with every report.
NOTICE = "This similarity report is an aid for a person's judgement; it never affects grades."
#: Shortest run of matching normalised tokens that counts (copydetect's noise threshold).
NOISE_TOKENS = 12
#: A run of matching tokens this long is always found (copydetect's guarantee threshold).
GUARANTEE_TOKENS = 18
#: Pairs whose score is at least this are listed (the ``--threshold`` default).
DEFAULT_THRESHOLD = 0.5
#: Most pairs shown side by side in the HTML report (the CSV lists them all).
MAX_REPORT_PAIRS = 100
#: Output file names.
CSV_NAME, HTML_NAME = "similarity.csv", "similarity.html"
#: Name prefix of a known public solution in the outputs.
PUBLIC_PREFIX = "public:"
#: Separator between regions in a document (never a normalised token).
_SEPARATOR = "\x1e"
#: First character given to a normalised token (above ASCII, so never the separator).
_FIRST_TOKEN_CHAR = 0x100
CSV_FIELDS = ("submission_a", "submission_b", "score", "share_a", "share_b",
              "matched_tokens_a", "matched_tokens_b", "tokens_a", "tokens_b", "functions")


@dataclass
class Document:
    """One submission's student-written code, normalised and fingerprinted.

    Attributes:
        name: the submission's file or folder name (``public:NAME`` for a public solution).
        code: one character per normalised token, regions separated by ``_SEPARATOR``.
        text: what the report shows: each region's source under a ``# ===== name`` header.
        starts, ends: int arrays [len(code)]: the span in ``text`` of each character of ``code``.
        regions: ``(first, end, name)`` of each region in ``code``.
        fingerprint: copydetect's ``CodeFingerprint`` of ``code``.
    """

    name: str
    code: str
    text: str
    starts: np.ndarray
    ends: np.ndarray
    regions: list[tuple[int, int, str]]
    fingerprint: Any = None

    @property
    def tokens(self) -> int:
        """Student-written tokens in the document."""
        return len(self.code) - len(self.regions)


@dataclass(frozen=True)
class Pair:
    """One compared pair (``a`` before ``b`` in the batch's order).

    Attributes:
        share_a, share_b: fraction of each side's fingerprinted tokens found in the other.
        matched_a, matched_b: tokens of each side inside matched runs.
        functions: ``(region, matched tokens)`` for each region holding matches, most first.
    """

    a: str
    b: str
    share_a: float
    share_b: float
    matched_a: int
    matched_b: int
    tokens_a: int
    tokens_b: int
    functions: tuple[tuple[str, int], ...] = ()

    @property
    def score(self) -> float:
        return max(self.share_a, self.share_b)


@dataclass
class SimilarityReport:
    """What :func:`run_similarity` found and wrote."""

    documents: list[str]
    pairs: list[Pair]
    compared: int
    threshold: float
    skipped: dict[str, str] = field(default_factory=dict)
    csv_path: Path | None = None
    html_path: Path | None = None
    seconds: float = 0.0


class Vocabulary:
    """Gives each normalised token key its own character (the same one for the whole batch)."""

    def __init__(self) -> None:
        self._chars: dict[str, str] = {}

    def char(self, key: str) -> str:
        found = self._chars.get(key)
        if found is None:
            number = _FIRST_TOKEN_CHAR + len(self._chars)
            found = self._chars[key] = chr(number if number < 0xD800 else number + 0x800)  # skip surrogates
        return found


def build_document(name: str, regions: list[Region], vocabulary: Vocabulary) -> Document:
    """Lay out ``regions`` (one submission's, in :func:`canonical_order`) as one document."""
    code: list[str] = []
    text: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    bounds: list[tuple[int, int, str]] = []
    length = 0
    previous_end = 0
    for region in regions:
        header = f"# ===== {region.name} =====\n"
        base = length + len(header)
        first = len(code)
        code.append(_SEPARATOR)  # spans from the end of the last region's code to the start of this one's
        starts.append(base + region.tokens[0].start)
        ends.append(previous_end if bounds else base + region.tokens[0].start)
        for token in region.tokens:
            code.append(vocabulary.char(token.key))
            starts.append(base + token.start)
            ends.append(base + token.end)
        body = region.text if region.text.endswith("\n") else region.text + "\n"
        text += [header, body]
        length += len(header) + len(body)
        previous_end = ends[-1]
        bounds.append((first, len(code), region.name))
    return Document(name, "".join(code), "".join(text), np.array(starts, dtype=np.int64),
                    np.array(ends, dtype=np.int64), bounds)


def canonical_order(regions_per_module: dict[str, list[Region]]) -> list[Region]:
    """TODO regions in module and stub order, then each module's helpers sorted by normalised code."""
    ordered: list[Region] = []
    for module in STUDENT_MODULES:
        regions = regions_per_module.get(module, [])
        ordered += [r for r in regions if r.todo]
        ordered += sorted((r for r in regions if not r.todo), key=lambda r: [t.key for t in r.tokens])
    return ordered


def submission_regions(source: Path, model: StubModel, scratch: Path) -> tuple[list[Region], str]:
    """The student-written regions of one submission, and a note when something is wrong.

    Args:
        source: a zip or folder, unpacked with :func:`autograder.intake.load_submission`.
        model: the stub index.
        scratch: a folder that does not exist yet (removed again before returning).
    """
    try:
        submission = load_submission(source, scratch)
        per_module = {}
        for module, path in submission.found.items():
            text = path.read_bytes().decode("utf-8", errors="replace")
            per_module[module] = extract_regions(text, module, model)
    finally:
        rmtree(scratch)
    regions = canonical_order(per_module)
    note = "; ".join(submission.problems)
    if not regions and submission.found:
        note = "; ".join(filter(None, [note, "no student-written code (every TODO left as in the stub)"]))
    return regions, note


def compare(a: Document, b: Document) -> Pair:
    """Compare two fingerprinted documents with copydetect."""
    from copydetect.detector import compare_files

    if not a.fingerprint.hashes & b.fingerprint.hashes:
        return Pair(a.name, b.name, 0.0, 0.0, 0, 0, a.tokens, b.tokens)
    _, (share_a, share_b), (slices_a, slices_b) = compare_files(a.fingerprint, b.fingerprint)
    return Pair(a.name, b.name, float(share_a), float(share_b), _covered(slices_a), _covered(slices_b),
                a.tokens, b.tokens)


def run_similarity(
    submissions_dir: str | Path,
    out_dir: str | Path,
    against_dir: str | Path | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    reference: str | Path | None = None,
) -> SimilarityReport:
    """Compare every pair of submissions (and each submission with each public solution).

    Args:
        submissions_dir: folder with one zip or folder per submission (hidden entries skipped).
        out_dir: folder for ``similarity.csv`` and ``similarity.html`` (created).
        against_dir: optional folder of known public solutions, one zip or subfolder each.
        threshold: list pairs whose score is at least this, in [0, 1].
        reference: the reference ``faster_rcnn`` folder (default: the course's).

    Returns:
        The report; the files are written.

    Raises:
        ValueError: ``threshold`` is outside [0, 1].
        FileNotFoundError: ``submissions_dir`` or ``against_dir`` is not a folder.
    """
    from copydetect.detector import CodeFingerprint

    started = time.perf_counter()
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold: expected a number in [0, 1], got {threshold}")
    for label, folder in (("submissions folder", submissions_dir), ("--against folder", against_dir)):
        if folder is not None and not Path(folder).is_dir():
            raise FileNotFoundError(f"{label} {folder} is not a folder")
    model = load_stub_model(reference if reference is not None else reference_dir())
    vocabulary = Vocabulary()
    window = GUARANTEE_TOKENS - NOISE_TOKENS + 1
    boilerplate = np.unique(np.concatenate([
        np.array(list(CodeFingerprint(m, NOISE_TOKENS, 1, filter=False, fp=io.StringIO(_stub_code(m, model, vocabulary))).hashes))
        for m in STUDENT_MODULES
    ]))
    documents: list[Document] = []
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="rcnn-similarity-") as scratch:
        sources = [(p.name, p) for p in _entries(Path(submissions_dir))]
        if against_dir is not None:
            sources += [(PUBLIC_PREFIX + p.name, p) for p in _entries(Path(against_dir))]
        for number, (name, source) in enumerate(sources):
            regions, note = submission_regions(source, model, Path(scratch) / str(number))
            if not regions:
                skipped[name] = note or "no student-written code"
                continue
            document = build_document(name, regions, vocabulary)
            document.fingerprint = CodeFingerprint(name, NOISE_TOKENS, window, boilerplate, filter=False,
                                                   fp=io.StringIO(document.code))
            documents.append(document)
    # copydetect's CopyDetector walks folders with its own tokenizer; the loop over our documents is ours.
    count = len(documents)
    shares = np.full((count, count, 2), -1.0)  # copydetect's layout: [i, j] = (share of i, share of j); -1 not compared
    matched = np.full((count, count), -1, dtype=np.int64)
    listed: list[Pair] = []
    for i, a in enumerate(documents):
        for j in range(i + 1, count):
            b = documents[j]
            if a.name.startswith(PUBLIC_PREFIX) and b.name.startswith(PUBLIC_PREFIX):
                continue
            pair = compare(a, b)
            shares[i, j], shares[j, i] = (pair.share_a, pair.share_b), (pair.share_b, pair.share_a)
            matched[i, j], matched[j, i] = pair.matched_a, pair.matched_b
            if pair.score >= threshold and pair.score > 0:
                listed.append(pair)
    by_name = {d.name: d for d in documents}
    listed = sorted((_with_functions(p, by_name) for p in listed), key=lambda p: (-p.score, -p.matched_a, p.a, p.b))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    compared = int((matched[np.triu_indices(count, 1)] >= 0).sum())
    report = SimilarityReport([d.name for d in documents], listed, compared, threshold, skipped)
    report.csv_path = write_csv(listed, out / CSV_NAME)
    report.html_path = write_html(documents, listed, shares, matched, threshold, out / HTML_NAME)
    report.seconds = time.perf_counter() - started
    return report


def write_csv(pairs: list[Pair], path: Path) -> Path:
    """One row per pair, in the given order; ``functions`` like ``nms.nms 80; iou.iou 45``."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_FIELDS)
        for p in pairs:
            functions = "; ".join(f"{name} {count}" for name, count in p.functions)
            writer.writerow([p.a, p.b, f"{p.score:.3f}", f"{p.share_a:.3f}", f"{p.share_b:.3f}",
                             p.matched_a, p.matched_b, p.tokens_a, p.tokens_b, functions])
    return path


def write_html(documents: list[Document], pairs: list[Pair], shares: np.ndarray, matched: np.ndarray,
               threshold: float, path: Path) -> Path:
    """copydetect's HTML report of the best ``MAX_REPORT_PAIRS`` pairs, over the students' own text.

    Args:
        documents: the batch, in the order of the matrices' rows.
        pairs: the listed pairs, best first.
        shares: float [D, D, 2]: ``[i, j]`` = (share of i, share of j); -1 where not compared.
        matched: int [D, D]: tokens of i matched with j; -1 where not compared.
        threshold: the listing threshold.
        path: the HTML file to write.
    """
    from copydetect.detector import CopyDetector, compare_files

    if not documents:
        path.write_text(f"<!DOCTYPE html><title>Similarity</title><p>No submission holds student-written code. "
                        f"{html.escape(NOTICE)}</p>\n", encoding="utf-8")
        return path
    cut = pairs[MAX_REPORT_PAIRS - 1].score if len(pairs) > MAX_REPORT_PAIRS else threshold
    shown = [p for p in pairs if p.score >= cut]
    # copydetect lists a pair when one side's share is above display_t: exactly `shown`.
    detector = CopyDetector(test_dirs=[], display_t=min(max(cut - 1e-9, 0.0), 1.0), autoopen=False, silent=True,
                            out_file=str(path))
    names = _safe_names([d.name for d in documents])
    index = {d.name: i for i, d in enumerate(documents)}
    slices: dict[tuple[str, str], list[np.ndarray]] = {}
    for p in shown:
        a, b = documents[index[p.a]], documents[index[p.b]]
        _, _, (code_a, code_b) = compare_files(a.fingerprint, b.fingerprint)
        slices[(names[index[p.a]], names[index[p.b]])] = [_text_slices(a, code_a), _text_slices(b, code_b)]
    detector.test_files = detector.ref_files = names
    detector.file_data = {name: _Shown(d.text) for name, d in zip(names, documents)}
    detector.similarity_matrix, detector.token_overlap_matrix, detector.slice_matrix = shares, matched, slices
    detector.generate_html_report()
    return path


def format_summary(report: SimilarityReport, top: int = 10) -> str:
    """A few lines for the terminal: counts, the best pairs, where the files are, and the notice."""
    lines = [f"similarity: {len(report.documents)} documents compared in {report.compared} pairs "
             f"({report.seconds:.1f} s)"]
    for name, note in report.skipped.items():
        lines.append(f"  skipped {name}: {note}")
    lines.append(f"pairs with score >= {report.threshold:.2f}: {len(report.pairs)}")
    for p in report.pairs[:top]:
        functions = ", ".join(name for name, _ in p.functions[:4])
        lines.append(f"  {p.score:.2f}  {p.a}  {p.b}  {functions}")
    if report.csv_path is not None:
        lines.append(f"wrote {report.csv_path} and {report.html_path}")
    lines.append(NOTICE)
    return "\n".join(lines)


class _Shown:
    """The part of copydetect's ``CodeFingerprint`` its report reads: the text to show."""

    def __init__(self, raw_code: str) -> None:
        self.raw_code = raw_code


def _entries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _stub_code(module: str, model: StubModel, vocabulary: Vocabulary) -> str:
    """The whole stub module normalised like student code (copydetect's boilerplate)."""
    return "".join(vocabulary.char(t.key) for t in stub_tokens(module, model))


def _covered(slices: np.ndarray) -> int:
    """Tokens inside copydetect's matched slices (2 x M array of starts and ends)."""
    return int(np.sum(slices[1] - slices[0])) if len(slices) and slices.shape[-1] else 0


def _with_functions(pair: Pair, documents: dict[str, Document]) -> Pair:
    """``pair`` with the regions its matches fall in (the larger count of the two sides per name)."""
    from copydetect.detector import compare_files

    a, b = documents[pair.a], documents[pair.b]
    _, _, (slices_a, slices_b) = compare_files(a.fingerprint, b.fingerprint)
    counts: dict[str, int] = {}
    for document, slices in ((a, slices_a), (b, slices_b)):
        matched = np.zeros(len(document.code), dtype=bool)
        for start, end in zip(*slices):
            matched[int(start) : int(end)] = True
        for first, end, name in document.regions:
            counts[name] = max(counts.get(name, 0), int(matched[first:end].sum()))
    functions = tuple(sorted(((n, c) for n, c in counts.items() if c), key=lambda item: (-item[1], item[0])))
    return Pair(pair.a, pair.b, pair.share_a, pair.share_b, pair.matched_a, pair.matched_b,
                pair.tokens_a, pair.tokens_b, functions)


def _text_slices(document: Document, slices: np.ndarray) -> np.ndarray:
    """copydetect's slices in ``document.code`` mapped to spans of ``document.text``."""
    if not len(slices) or not slices.shape[-1]:
        return np.zeros((2, 0), dtype=np.int64)
    starts = document.starts[slices[0].astype(np.int64)]
    ends = document.ends[slices[1].astype(np.int64) - 1]
    return np.stack([starts, np.maximum(ends, starts)])


def _safe_names(names: list[str]) -> list[str]:
    """Submission names as the HTML report shows them (copydetect does not escape every place), unique."""
    shown: list[str] = []
    for name in names:
        safe = re.sub(r"[^A-Za-z0-9._:@+-]", "_", name)
        shown.append(safe if safe not in shown else f"{safe}#{len(shown)}")
    return shown
