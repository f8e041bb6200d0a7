"""Similarity report across a batch of submissions: an aid for a person's judgement, never part of a grade.

Each submission (a zip or folder in any layout :func:`autograder.intake.load_submission`
accepts) becomes one document: its student-written regions
(:mod:`autograder.similarity_regions`), one normalised character per token, in a fixed
order (TODO functions in the stub's order, then the student's helpers sorted by their
normalised code), so moving functions around in a file changes nothing. Each document is
fingerprinted by winnowing its token k-grams (copydetect's ``winnow``), minus the k-grams
of the normalised stubs (boilerplate). For a pair, each side's share is copydetect's
similarity: its tokens inside runs of shared fingerprints over the tokens its fingerprints
cover; the pair's score is the larger share.

Outputs in the chosen folder: ``similarity.csv`` (pairs at or above the threshold, best
first, with the functions the matches fall in and matched token counts) and
``similarity.html`` (copydetect's report: matched code side by side, over the extracted
regions with the students' own identifiers). Known public solutions (``--against``, one
zip or subfolder each) are compared with every submission.
"""

from __future__ import annotations

import csv
import dataclasses
import html
import io
import multiprocessing
import os
import re
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from autograder.similarity_regions import Region, StubModel, load_stub_model, stub_tokens, submission_regions
from rcnn_kit.course import STUDENT_MODULES, reference_dir

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
#: Below this many submissions, unpacking in worker processes costs more than it saves.
PARALLEL_MIN_SUBMISSIONS = 16
#: Most worker processes for unpacking and extraction.
MAX_WORKERS = 8
#: Output file names.
CSV_NAME, HTML_NAME = "similarity.csv", "similarity.html"
#: Name prefix of a known public solution in the outputs.
PUBLIC_PREFIX = "public:"
CSV_FIELDS = ("submission_a", "submission_b", "score", "share_a", "share_b",
              "matched_tokens_a", "matched_tokens_b", "tokens_a", "tokens_b", "functions")
#: Separator between regions in a document (never a normalised token).
_SEPARATOR = "\x1e"
#: First character given to a normalised token (above ASCII, so never the separator).
_FIRST_TOKEN_CHAR = 0x100
_EMPTY = np.zeros(0, dtype=np.int64)
#: Multiplier of the polynomial k-gram hash (odd, so every character changes the value).
_HASH_BASE = np.uint64(0x100000001B3)


@dataclass
class Document:
    """One submission's student-written code, normalised and fingerprinted.

    Attributes:
        name: the submission's file or folder name (``public:NAME`` for a public solution).
        code: one character per normalised token, each region after a ``_SEPARATOR``.
        text: what the report shows: each region's source under a ``# ===== name`` header.
        starts, ends: int64 [len(code)]: the span in ``text`` of each character of ``code``.
        regions: ``(first, end, name)``: the range of each region's tokens in ``code``.
        positions, hashes: int64 [F]: the winnowed fingerprints (position in ``code``, hash),
            by position.
        coverage: tokens its fingerprints cover (copydetect's ``token_coverage``).
    """

    name: str
    code: str
    text: str
    starts: np.ndarray
    ends: np.ndarray
    regions: list[tuple[int, int, str]]
    positions: np.ndarray = field(default_factory=lambda: _EMPTY)
    hashes: np.ndarray = field(default_factory=lambda: _EMPTY)
    coverage: float = 0.0

    @property
    def tokens(self) -> int:
        """Student-written tokens in the document."""
        return sum(end - first for first, end, _ in self.regions)


@dataclass(frozen=True)
class Pair:
    """One compared pair.

    Attributes:
        share_a, share_b: each side's tokens in shared runs over the tokens its fingerprints cover.
        matched_a, matched_b: each side's tokens inside runs of shared fingerprints.
        functions: ``(region, matched tokens)`` for each region holding matches, most first
            (the larger count of the two sides when both have a region of that name).
        runs_a, runs_b: int64 [2, R]: start and end in each document's ``code`` of the
            matched runs (listed pairs only).
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
    runs_a: np.ndarray = field(default_factory=lambda: np.zeros((2, 0), dtype=np.int64), compare=False, repr=False)
    runs_b: np.ndarray = field(default_factory=lambda: np.zeros((2, 0), dtype=np.int64), compare=False, repr=False)

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
    """Lay out one submission's ``regions`` (in canonical order) as a document, not yet fingerprinted."""
    code: list[str] = []
    text: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    bounds: list[tuple[int, int, str]] = []
    length = 0
    for region in regions:
        header = f"# ===== {region.name} =====\n"
        base = length + len(header)
        first = len(code)
        code.append(_SEPARATOR)  # spans from the end of the previous region's code to this one's start
        starts.append(base + region.tokens[0].start)
        ends.append(ends[-1] if ends else starts[-1])
        for token in region.tokens:
            code.append(vocabulary.char(token.key))
            starts.append(base + token.start)
            ends.append(base + token.end)
        body = region.text if region.text.endswith("\n") else region.text + "\n"
        text += [header, body]
        length += len(header) + len(body)
        bounds.append((first + 1, len(code), region.name))
    return Document(name, "".join(code), "".join(text), np.array(starts, dtype=np.int64),
                    np.array(ends, dtype=np.int64), bounds)


def fingerprint(document: Document, boilerplate: np.ndarray) -> None:
    """Fingerprint ``document.code``: k-gram hashes, copydetect's winnowing, boilerplate removed."""
    from copydetect.utils import get_token_coverage, winnow

    window = GUARANTEE_TOKENS - NOISE_TOKENS + 1
    hashes, positions = winnow(kgram_hashes(document.code), window, remove_duplicates=False)
    keep = ~np.isin(hashes, boilerplate)
    by_position = dict(zip(positions[keep].tolist(), hashes[keep].tolist()))
    order = sorted(by_position)
    document.positions = np.array(order, dtype=np.int64)
    document.hashes = np.array([by_position[i] for i in order], dtype=np.int64)
    by_hash: dict[int, list[int]] = {}
    for position, value in by_position.items():
        by_hash.setdefault(value, []).append(position)
    document.coverage = float(get_token_coverage(by_hash, NOISE_TOKENS, len(document.code)))


def kgram_hashes(code: str) -> np.ndarray:
    """Hash of every ``NOISE_TOKENS``-character substring of ``code``: int64 [max(len - k + 1, 0)].

    Written here because copydetect hashes k-grams with Python's ``hash()``, which is salted
    per process: its fingerprints, and so the scores, would change from run to run.
    Values have 52 bits, exact in the float64 buffer of copydetect's winnowing.
    """
    chars = np.frombuffer(code.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    count = len(chars) - NOISE_TOKENS + 1
    if count <= 0:
        return _EMPTY
    value = np.zeros(count, dtype=np.uint64)
    for offset in range(NOISE_TOKENS):  # polynomial hash modulo 2**64, then splitmix64's finaliser
        value = value * _HASH_BASE + chars[offset : offset + count]
    value ^= value >> np.uint64(30)
    value *= np.uint64(0xBF58476D1CE4E5B9)
    value ^= value >> np.uint64(27)
    value *= np.uint64(0x94D049BB133111EB)
    value ^= value >> np.uint64(31)
    return (value >> np.uint64(12)).astype(np.int64)


def compare(a: Document, b: Document) -> Pair:
    """Compare two fingerprinted documents (the numbers copydetect's ``compare_files`` gives)."""
    _, _, in_a, in_b = next(all_pairs([a, b], skip_public_pairs=False))
    return _pair(a, b, in_a, in_b)


def all_pairs(
    documents: list[Document], skip_public_pairs: bool = True
) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """``(i, j, positions in documents[i], positions in documents[j])`` of shared fingerprints
    (ascending), for every pair i < j (except two public solutions, unless asked).

    Written here because copydetect's ``compare_files`` builds one array per shared hash
    (milliseconds a pair), too slow for the 20 000 pairs of a class of 200: this marks each
    document's hashes in a lookup table once and reads the other side through it.
    """
    _, ids = np.unique(np.concatenate([_EMPTY, *(d.hashes for d in documents)]), return_inverse=True)
    bounds = np.cumsum([0, *(len(d.hashes) for d in documents)])
    ids = [ids[bounds[k] : bounds[k + 1]] for k in range(len(documents))]
    in_first = np.zeros(int(bounds[-1]) + 1, dtype=bool)
    in_second = np.zeros_like(in_first)
    for i, a in enumerate(documents):
        in_first[ids[i]] = True
        for j in range(i + 1, len(documents)):
            if skip_public_pairs and a.name.startswith(PUBLIC_PREFIX) and documents[j].name.startswith(PUBLIC_PREFIX):
                continue
            shared_second = in_first[ids[j]]
            if not shared_second.any():
                yield i, j, _EMPTY, _EMPTY
                continue
            in_second[ids[j]] = True
            shared_first = in_second[ids[i]]
            in_second[ids[j]] = False
            yield i, j, a.positions[shared_first], documents[j].positions[shared_second]
        in_first[ids[i]] = False


def run_similarity(
    submissions_dir: str | Path,
    out_dir: str | Path,
    against_dir: str | Path | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    reference: str | Path | None = None,
) -> SimilarityReport:
    """Compare every pair of submissions, and each submission with each public solution.

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
    started = time.perf_counter()
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold: expected a number in [0, 1], got {threshold}")
    for label, folder in (("submissions folder", submissions_dir), ("--against folder", against_dir)):
        if folder is not None and not Path(folder).is_dir():
            raise FileNotFoundError(f"{label} {folder} is not a folder")
    model = load_stub_model(reference if reference is not None else reference_dir())
    sources = [(p.name, p) for p in _entries(Path(submissions_dir))]
    if against_dir is not None:
        sources += [(PUBLIC_PREFIX + p.name, p) for p in _entries(Path(against_dir))]
    vocabulary = Vocabulary()
    boilerplate = _boilerplate(model, vocabulary)
    documents: list[Document] = []
    skipped: dict[str, str] = {}
    for (name, _), (regions, note) in zip(sources, _load_all([p for _, p in sources], model)):
        if not regions:
            skipped[name] = note or "no student-written code"
            continue
        document = build_document(name, regions, vocabulary)
        fingerprint(document, boilerplate)
        documents.append(document)
    count = len(documents)
    shares = np.full((count, count, 2), -1.0)  # copydetect's layout: [i, j] = (share of i, share of j); -1 not compared
    matched = np.full((count, count), -1, dtype=np.int64)
    listed: list[Pair] = []
    for i, j, in_a, in_b in all_pairs(documents):
        pair = _pair(documents[i], documents[j], in_a, in_b)
        shares[i, j], shares[j, i] = (pair.share_a, pair.share_b), (pair.share_b, pair.share_a)
        matched[i, j], matched[j, i] = pair.matched_a, pair.matched_b
        if pair.score >= threshold and pair.score > 0:
            listed.append(_with_functions(pair, documents[i], documents[j], in_a, in_b))
    listed.sort(key=lambda p: (-p.score, -max(p.matched_a, p.matched_b), p.a, p.b))
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
        matched: int64 [D, D]: tokens of i matched with j; -1 where not compared.
        threshold: the listing threshold.
        path: the HTML file to write.
    """
    from copydetect.detector import CopyDetector

    if not documents:  # copydetect cannot draw an empty matrix
        path.write_text(f"<!DOCTYPE html><title>Similarity</title><p>No submission holds student-written code. "
                        f"{html.escape(NOTICE, quote=False)}</p>\n", encoding="utf-8")
        return path
    cut = pairs[MAX_REPORT_PAIRS - 1].score if len(pairs) > MAX_REPORT_PAIRS else threshold
    # copydetect lists a pair when one side's share is above display_t: exactly the pairs scoring >= cut.
    detector = CopyDetector(test_dirs=[], display_t=min(max(cut - 1e-9, 0.0), 1.0), autoopen=False, silent=True,
                            out_file=str(path))
    names = _safe_names([d.name for d in documents])
    index = {d.name: i for i, d in enumerate(documents)}
    slices: dict[tuple[str, str], list[np.ndarray]] = {}
    for p in pairs:
        if p.score < cut:
            break
        i, j = index[p.a], index[p.b]
        slices[(names[i], names[j])] = [_text_slices(documents[i], p.runs_a), _text_slices(documents[j], p.runs_b)]
    # Fill the state CopyDetector.run() would leave (over files it tokenizes itself), then let it render.
    detector.test_files = detector.ref_files = names
    detector.file_data = {name: _Shown(d.text) for name, d in zip(names, documents)}
    detector.similarity_matrix, detector.token_overlap_matrix, detector.slice_matrix = shares, matched, slices
    with warnings.catch_warnings():  # copydetect 0.5 reads its template with a deprecated importlib call
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"copydetect\.")
        page = detector.generate_html_report(output_mode="return")
    banner = f'<body>\n<p class="alert alert-warning">{html.escape(NOTICE, quote=False)}</p>'
    path.write_text(page.replace("<body>", banner, 1), encoding="utf-8")
    return path


def format_summary(report: SimilarityReport, top: int = 10) -> str:
    """A few lines for the terminal: counts, the best pairs, where the files are, and the notice."""
    lines = [f"similarity: {len(report.documents)} submissions and public solutions, "
             f"{report.compared} pairs compared in {report.seconds:.1f} s"]
    lines += [f"  skipped {name}: {note}" for name, note in report.skipped.items()]
    lines.append(f"pairs with score >= {report.threshold:.2f}: {len(report.pairs)}")
    for p in report.pairs[:top]:
        lines.append(f"  {p.score:.2f}  {p.a}  {p.b}  {', '.join(name for name, _ in p.functions[:4])}")
    if report.csv_path is not None:
        lines.append(f"wrote {report.csv_path} and {report.html_path}")
    lines.append(NOTICE)
    return "\n".join(lines)


class _Shown:
    """The part of copydetect's ``CodeFingerprint`` its report reads: the text to show."""

    def __init__(self, raw_code: str) -> None:
        self.raw_code = raw_code


_worker_model: StubModel | None = None


def _set_worker_model(model: StubModel) -> None:
    global _worker_model
    _worker_model = model


def _regions_or_note(job: tuple[Path, Path], model: StubModel | None = None) -> tuple[list[Region], str]:
    """:func:`submission_regions` of ``job`` = (source, scratch); a failure is a note, not the batch's end."""
    model = model if model is not None else _worker_model
    assert model is not None, "worker started without a stub model"
    try:
        return submission_regions(job[0], model, job[1])
    except Exception as exc:  # one unreadable submission never stops the report; it is listed as skipped
        return [], f"not compared: {type(exc).__name__}: {exc}"


def _load_all(sources: list[Path], model: StubModel) -> list[tuple[list[Region], str]]:
    """:func:`submission_regions` of every source, in worker processes for a large batch."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = min(MAX_WORKERS, cpus)
    with tempfile.TemporaryDirectory(prefix="rcnn-similarity-") as scratch:
        jobs = [(source, Path(scratch) / str(number)) for number, source in enumerate(sources)]
        if len(jobs) < PARALLEL_MIN_SUBMISSIONS or workers < 2:
            return [_regions_or_note(job, model) for job in jobs]
        # spawn, not fork: the parent may hold torch's threads
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_set_worker_model, initargs=(model,)) as pool:
            return list(pool.map(_regions_or_note, jobs, chunksize=max(1, len(jobs) // (4 * workers))))


def _entries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _boilerplate(model: StubModel, vocabulary: Vocabulary) -> np.ndarray:
    """Hashes of every k-gram of the normalised stubs (what copydetect calls boilerplate), sorted."""
    codes = ["".join(vocabulary.char(t.key) for t in stub_tokens(module, model)) for module in STUDENT_MODULES]
    return np.unique(np.concatenate([kgram_hashes(code) for code in codes]))


def _runs(positions: np.ndarray) -> np.ndarray:
    """Runs of matched tokens from ascending fingerprint positions: int64 [2, R] of starts and ends.

    As copydetect's ``get_copied_slices``: each fingerprint covers ``NOISE_TOKENS`` tokens,
    and fingerprints closer than that join one run.
    """
    if not len(positions):
        return np.zeros((2, 0), dtype=np.int64)
    breaks = np.nonzero(np.diff(positions) > NOISE_TOKENS - 1)[0]
    starts = np.concatenate([positions[:1], positions[breaks + 1]])
    ends = np.concatenate([positions[breaks], positions[-1:]]) + NOISE_TOKENS
    return np.stack([starts, ends])


def _run_tokens(positions: np.ndarray) -> int:
    """Tokens inside :func:`_runs` of ``positions`` (ascending)."""
    if not len(positions):
        return 0
    return int(np.minimum(np.diff(positions), NOISE_TOKENS).sum()) + NOISE_TOKENS


def _pair(a: Document, b: Document, in_a: np.ndarray, in_b: np.ndarray) -> Pair:
    """The pair's numbers from the positions of their shared fingerprints (as copydetect's ``compare_files``)."""
    matched_a, matched_b = _run_tokens(in_a), _run_tokens(in_b)
    share_a = matched_a / a.coverage if a.coverage else 0.0
    share_b = matched_b / b.coverage if b.coverage else 0.0
    return Pair(a.name, b.name, share_a, share_b, matched_a, matched_b, a.tokens, b.tokens)


def _with_functions(pair: Pair, a: Document, b: Document, in_a: np.ndarray, in_b: np.ndarray) -> Pair:
    """``pair`` with the regions its matched runs fall in, and how many tokens of each."""
    counts: dict[str, int] = {}
    runs_a, runs_b = _runs(in_a), _runs(in_b)
    for document, runs in ((a, runs_a), (b, runs_b)):  # runs are disjoint: overlaps with a region add up
        bounds = np.array([(first, end) for first, end, _ in document.regions], dtype=np.int64)  # (R, 2)
        inside = np.minimum(runs[1][None, :], bounds[:, 1:]) - np.maximum(runs[0][None, :], bounds[:, :1])  # (R, runs)
        for (_, _, name), count in zip(document.regions, np.clip(inside, 0, None).sum(axis=1).tolist()):
            counts[name] = max(counts.get(name, 0), count)
    functions = tuple(sorted(((n, c) for n, c in counts.items() if c), key=lambda item: (-item[1], item[0])))
    return dataclasses.replace(pair, functions=functions, runs_a=runs_a, runs_b=runs_b)


def _text_slices(document: Document, runs: np.ndarray) -> np.ndarray:
    """Runs in ``document.code`` mapped to spans of ``document.text`` (int64 [2, R])."""
    if not runs.shape[1]:
        return runs
    starts = document.starts[runs[0]]
    return np.stack([starts, np.maximum(document.ends[runs[1] - 1], starts)])


def _safe_names(names: list[str]) -> list[str]:
    """Submission names as the HTML report shows them (copydetect does not escape every place), unique."""
    shown: list[str] = []
    for name in names:
        safe = re.sub(r"[^A-Za-z0-9._:@+-]", "_", name)
        shown.append(safe if safe not in shown else f"{safe}#{len(shown)}")
    return shown
