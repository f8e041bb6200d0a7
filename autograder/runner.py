"""Run the hidden checks on a submission and collect per-rubric outcomes.

The hidden checks (``autograder/checks/test_*.py``) are ordinary pytest tests marked
``@pytest.mark.rubric("<id>")``. :func:`run_checks` runs them in the grader process with
``pytest.main`` and a :class:`GraderPlugin`, which

- reads the rubric (:func:`load_rubric`), drops items whose id is not in it (and, with
  ``skip_overfit``, the ``kind = "overfit"`` entries) and orders items by rubric group;
- provides the fixtures ``student`` (the group's :class:`~autograder.sandbox.SandboxClient`,
  one persistent child per group, handed on to the next group when that one loads the same
  files, else closed when the group's last item ends) and ``ref`` (the
  reference package, trusted, imported in the grader);
- records every item's outcome with a student-safe message.

Scoring: a group's score is ``points * passed / counted`` where skipped items are not
counted. A failure is shown to the student as the first line of its AssertionError
(checks raise :class:`autograder.compare.Fail`) or of its StudentError; any other
exception is a grader error, shown to the student only as such and to the instructor
with its traceback.
"""

from __future__ import annotations

import os
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from collections.abc import Iterator

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (e.g. Ubuntu 22.04 Gradescope images)
    import tomli as tomllib  # type: ignore[no-redef]

from autograder.explain import ExplainRecord, record_failure
from autograder.isolation import Confinement, Identity
from autograder.overfit_profile import OverfitChoice
from autograder.scoring import EDGE_MARK, NOT_IMPLEMENTED, CaseTally, group_fraction
from rcnn_kit.course import RUBRIC_KINDS, rmtree
from autograder.sandbox import Group, SandboxClient, SandboxInfraError, SandboxLimits, StudentError

#: Name under which the plugin is registered (the checks' conftest looks it up).
PLUGIN_NAME = "rcnn_autograder"
AUTOGRADER_DIR = Path(__file__).resolve().parent
DEFAULT_CHECKS_DIR = AUTOGRADER_DIR / "checks"
DEFAULT_RUBRIC = AUTOGRADER_DIR / "rubric.toml"
#: Seconds a group needs at least before the deadline to be started at all.
MIN_GROUP_START_S = 10.0
#: Student-visible reason of a group the deadline left no time for.
NOT_RUN_TEXT = "not run: time budget (grading stopped at its deadline; not your fault, ask your instructor)"
#: Student-visible text of a grader error inside a check.
GRADER_ERROR_TEXT = "internal grader error in this check (reported to the instructor; not your fault)"
#: Longest student-visible failure line (characters).
FAILURE_CHARS = 300
#: Rubric entry kinds (rcnn_kit.course); "overfit" entries are skipped by ``--skip-overfit``.


@dataclass(frozen=True)
class RubricEntry:
    """One ``[[check]]`` of rubric.toml (see the comments in that file)."""

    id: str
    name: str
    points: float
    student_modules: tuple[str, ...]
    reference_modules: tuple[str, ...]
    timeout_s: float
    kind: str = "unit"

    def group(self) -> Group:
        return Group(self.id, self.student_modules, self.reference_modules, self.timeout_s, self.kind)


#: Default of ``[grading] deadline_s`` when a rubric has none (seconds).
DEFAULT_DEADLINE_S = 540.0


def load_deadline(path: Path) -> float:
    """``[grading] deadline_s`` of a rubric file (default :data:`DEFAULT_DEADLINE_S`).

    Raises:
        ValueError: the value is not a positive number.
    """
    with Path(path).open("rb") as fh:
        value = tomllib.load(fh).get("grading", {}).get("deadline_s", DEFAULT_DEADLINE_S)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{path} [grading] deadline_s: expected a positive number of seconds, got {value!r}")
    return float(value)


def load_rubric(path: Path) -> list[RubricEntry]:
    """Read and validate a rubric file.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: a field is missing, of the wrong type, or an id repeats.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"rubric file {path} does not exist")
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    entries = []
    for index, raw in enumerate(data.get("check", [])):
        where = f"{path} [[check]] #{index + 1}"
        try:
            entry = RubricEntry(
                id=str(raw["id"]), name=str(raw["name"]), points=float(raw["points"]),
                student_modules=tuple(raw["student_modules"]),
                reference_modules=tuple(raw.get("reference_modules", ())),
                timeout_s=float(raw.get("timeout_s", 60)), kind=str(raw.get("kind", "unit")),
            )
        except KeyError as exc:
            raise ValueError(f"{where}: missing field {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: bad value ({exc})") from None
        if entry.kind not in RUBRIC_KINDS:
            raise ValueError(f"{where}: kind must be one of {RUBRIC_KINDS}, got {entry.kind!r}")
        if entry.points < 0 or entry.timeout_s <= 0:
            raise ValueError(f"{where}: points must be >= 0 and timeout_s > 0, got {entry.points}, {entry.timeout_s}")
        if set(entry.student_modules) & set(entry.reference_modules):
            raise ValueError(f"{where}: a module is both a student and a reference module")
        entries.append(entry)
    ids = [e.id for e in entries]
    if len(set(ids)) != len(ids) or not entries:
        raise ValueError(f"{path}: rubric ids must be unique and non-empty, got {ids}")
    return entries


@dataclass
class GroupResult:
    """Outcome of one rubric group."""

    entry: RubricEntry
    passed: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)  # student-visible, one per failed item
    instructor_notes: list[str] = field(default_factory=list)  # tracebacks of grader errors
    student_output: str = ""  # captured stdout/stderr of the child (instructor only)
    facts: dict[str, Any] = field(default_factory=dict)
    skipped_reason: str | None = None
    feedback_md: list[str] = field(default_factory=list)  # extra student-visible Markdown (``record_property``)
    artifacts: list[tuple[str, bytes]] = field(default_factory=list)  # (file name, bytes) written beside results.json
    tally: CaseTally = field(default_factory=CaseTally)  # main/edge outcomes for the scoring rules
    not_run_reason: str | None = None  # set when the grading deadline left no time for this group
    explain: list[ExplainRecord] = field(default_factory=list)  # per failed case, for --explain (instructor only)

    @property
    def counted(self) -> int:
        return self.passed + self.failed

    @property
    def score(self) -> float:
        """Points earned (:func:`autograder.scoring.group_fraction`: edge cases and unfinished code earn nothing)."""
        if self.not_run_reason is not None:
            return 0.0
        return self.entry.points * group_fraction(self.tally)[0]

    @property
    def zero_reason(self) -> str | None:
        """Why the group scores 0 despite passed cases (a scoring rule), else None."""
        return group_fraction(self.tally)[1]


@dataclass
class GradeSettings:
    """Everything :func:`run_checks` needs besides the student's files."""

    reference_dir: Path
    checks_dir: Path = DEFAULT_CHECKS_DIR
    rubric_path: Path = DEFAULT_RUBRIC
    device: str = "cpu"
    skip_overfit: bool = False
    limits: SandboxLimits = SandboxLimits()
    identity: Identity | None = None
    keyword: str | None = None  # pytest -k expression (reduced runs in the kit's tests)
    confinement: Confinement | None = None  # default: isolation.choose_confinement(identity)
    deadline: float | None = None  # time.monotonic() by which every child must be gone (None: no deadline)
    overfit: OverfitChoice = OverfitChoice()  # which overfit profile and data (autograder/overfit_profile.py)


class GraderPlugin:
    """pytest plugin that owns the sandbox clients and records outcomes (see module doc)."""

    def __init__(self, settings: GradeSettings, files: dict[str, Path], scratch_root: Path) -> None:
        self.settings = settings
        self.files = files
        self.scratch_root = scratch_root
        self.rubric = {e.id: e for e in load_rubric(settings.rubric_path)}
        self.order = list(self.rubric)
        self.results = {rid: GroupResult(e) for rid, e in self.rubric.items()}
        self.ignored: dict[str | None, int] = {}  # rubric id not in the rubric -> items dropped
        # At most one live client (root mode kills the whole sandbox uid when one ends). It is
        # keyed by the rubric id it serves now; consecutive groups with the same
        # Group.share_key() hand it on (switch_group) instead of starting another child.
        self.clients: dict[str, SandboxClient] = {}
        self.child_starts = 0  # sandbox children started in this run, over all groups
        self._planned: list[str] = []  # rubric ids in item order (after collection)
        self._item_failures: dict[str, tuple[str, str | None]] = {}
        self._skipped: set[str] = set()
        self._not_implemented: set[str] = set()
        self._started: set[str] = set()
        self.collect_errors: list[str] = []
        self._reference: ModuleType | None = None
        if settings.skip_overfit:
            for result in self.results.values():
                if result.entry.kind == "overfit":
                    result.skipped_reason = "skipped (--skip-overfit)"

    # -------------------------------------------------------------- collection
    def pytest_configure(self, config: pytest.Config) -> None:
        config.addinivalue_line("markers", "rubric(id): the rubric group a hidden check belongs to")
        config.addinivalue_line("markers", f"{EDGE_MARK}: counts only once a main case of its group passes")

    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
        keep, drop = [], []
        for item in items:
            rid = rubric_id(item)
            result = self.results.get(rid) if rid is not None else None
            if result is None or result.skipped_reason is not None:
                drop.append(item)
                if result is None:
                    self.ignored[rid] = self.ignored.get(rid, 0) + 1
            else:
                keep.append(item)
        keep.sort(key=lambda it: self.order.index(rubric_id(it)))  # stable: file order within a group
        if drop:
            config.hook.pytest_deselected(items=drop)
        items[:] = keep
        self._planned = [rid for i, rid in enumerate(map(rubric_id, keep)) if i == 0 or rid != rubric_id(keep[i - 1])]

    # -------------------------------------------------------------- fixtures
    def student_for(self, item: pytest.Item) -> SandboxClient:
        rid = rubric_id(item)
        if rid is None or rid not in self.rubric:
            raise SandboxInfraError(f"{item.nodeid} uses the student fixture without a known rubric mark")
        if rid in self.clients:
            return self.clients[rid]
        group = self.rubric[rid].group()
        for other in list(self.clients):  # a child of an earlier group: hand it on or end it
            if self.clients[other].group.share_key() == group.share_key():
                self.hand_over(other, rid)
                return self.clients[rid]
            self.close_client(other)
        self.clients[rid] = SandboxClient(
            group, self.files, reference_dir=self.settings.reference_dir,
            scratch_root=self.scratch_root, limits=self.settings.limits,
            identity=self.settings.identity, device=self.settings.device,
            cpu_budget_s=self._run_budget(rid), confinement=self.settings.confinement,
            hard_deadline=self.settings.deadline,
        )
        return self.clients[rid]

    def _run_budget(self, rid: str) -> float:
        """Sum of ``timeout_s`` of ``rid`` and the planned groups right after it that can share its child."""
        key = self.rubric[rid].group().share_key()
        planned = self._planned[self._planned.index(rid):] if rid in self._planned else [rid]
        total = 0.0
        for other in planned:
            if self.rubric[other].group().share_key() != key:
                break
            total += self.rubric[other].timeout_s
        return total

    def reference(self) -> ModuleType:
        if self._reference is None:
            from rcnn_kit.impl import import_all

            self._reference = import_all(self.settings.reference_dir, name="reference_faster_rcnn")
        return self._reference

    # -------------------------------------------------------------- outcomes
    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
        outcome = yield
        report = outcome.get_result()
        if report.failed and item.nodeid not in self._item_failures:
            self._item_failures[item.nodeid] = describe_failure(call.excinfo)
            exc = call.excinfo.value if call.excinfo is not None else None
            self.results[rubric_id(item)].explain.append(  # type: ignore[index]
                record_failure(str(rubric_id(item)), item.nodeid, self._item_failures[item.nodeid][0], exc)
            )
            if isinstance(exc, StudentError) and exc.exc_type == NOT_IMPLEMENTED:
                self._not_implemented.add(item.nodeid)
        elif report.skipped:
            self._skipped.add(item.nodeid)
        if call.when == "teardown":
            self._finish_item(item, report)

    def _finish_item(self, item: pytest.Item, teardown_report: pytest.TestReport) -> None:
        result = self.results[rubric_id(item)]  # type: ignore[index]
        for name, value in item.user_properties:  # set by checks through pytest's record_property
            if name == "feedback_md" and isinstance(value, str):
                result.feedback_md.append(value)
            elif name == "instructor_note" and isinstance(value, str):  # e.g. which overfit profile graded
                result.instructor_notes.append(value)
            elif name == "artifact" and isinstance(value, tuple) and len(value) == 2:
                file_name, data = value
                if isinstance(file_name, str) and isinstance(data, bytes):
                    result.artifacts.append((Path(file_name).name, data))
        edge = item.get_closest_marker(EDGE_MARK) is not None
        if self.settings.deadline is not None and time.monotonic() >= self.settings.deadline:
            result.not_run_reason = NOT_RUN_TEXT  # cut short: the group's evidence is incomplete
        if item.nodeid in self._item_failures:
            shown, note = self._item_failures.pop(item.nodeid)
            result.failed += 1
            result.failures.append(shown)
            result.tally.add(passed=False, edge=edge, not_implemented=item.nodeid in self._not_implemented)
            self._not_implemented.discard(item.nodeid)
            if note:
                result.instructor_notes.append(f"{item.nodeid}:\n{note}")
        elif item.nodeid in self._skipped:
            self._skipped.discard(item.nodeid)
        else:
            result.passed += 1
            result.tally.add(passed=True, edge=edge)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.collect_errors.append(f"{report.nodeid}: {report.longreprtext}")

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        """Skip the items of a group once the deadline leaves it no time (it scores 0, "not run")."""
        if self.settings.deadline is None:
            return
        result = self.results.get(rubric_id(item) or "")
        if result is None:
            return
        starting = result.counted == 0 and item.nodeid not in self._started
        self._started.add(item.nodeid)
        left = self.settings.deadline - time.monotonic()
        if result.not_run_reason is not None or (starting and left < MIN_GROUP_START_S) or left <= 0:
            result.not_run_reason = NOT_RUN_TEXT
            pytest.skip(NOT_RUN_TEXT)

    def pytest_runtest_teardown(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        rid = rubric_id(item)
        if rid not in self.clients:
            return
        next_rid = rubric_id(nextitem) if nextitem is not None else None
        if next_rid == rid:
            return
        next_entry = self.rubric.get(next_rid) if next_rid is not None else None
        if next_entry is not None and next_entry.group().share_key() == self.clients[rid].group.share_key():
            self.hand_over(rid, next_entry.id)
        else:
            self.close_client(rid)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        for rid in list(self.clients):
            self.close_client(rid)

    def hand_over(self, rid: str, next_rid: str) -> None:
        """Finish group ``rid``'s record and let its live client serve ``next_rid`` (same share key)."""
        client = self.clients.pop(rid)
        self._record(rid, client)
        client.switch_group(self.rubric[next_rid].group())
        self.clients[next_rid] = client

    def close_client(self, rid: str) -> None:
        client = self.clients.pop(rid)
        try:
            client.close()
        finally:
            self._record(rid, client)
            self.child_starts += client.total_starts

    def _record(self, rid: str, client: SandboxClient) -> None:
        """Copy the client's captured output, facts and events of group ``rid`` into its result."""
        result = self.results[rid]
        result.student_output += client.log.text()
        result.facts.update(client.facts)
        if client.events:
            result.facts["events"] = list(client.events)


def rubric_id(item: pytest.Item) -> str | None:
    """The id of the item's ``rubric`` mark, or None when it has none."""
    mark = item.get_closest_marker("rubric")
    return str(mark.args[0]) if mark is not None and mark.args else None


def describe_failure(excinfo: pytest.ExceptionInfo[BaseException] | None) -> tuple[str, str | None]:
    """(student-visible line, instructor note or None) for a failed phase."""
    if excinfo is None:
        return "failed", None
    exc = excinfo.value
    if isinstance(exc, StudentError):
        return _first_line(str(exc)), None
    if isinstance(exc, AssertionError):
        return _first_line(str(exc)) or "output does not match the reference", None
    if isinstance(exc, pytest.skip.Exception):
        return "skipped", None
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f"{os.sep}autograder{os.sep}" in f.filename]
    note = "".join(traceback.format_list(frames) + traceback.format_exception_only(type(exc), exc))
    return GRADER_ERROR_TEXT, note


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= FAILURE_CHARS else line[: FAILURE_CHARS - 3] + "..."


@dataclass
class CheckRun:
    """What :func:`run_checks` returns."""

    groups: list[GroupResult]
    ignored: dict[str | None, int]
    collect_errors: list[str]
    pytest_exit_code: int
    seconds: float
    child_starts: int = 0  # sandbox children started (groups sharing a child count once)


def run_checks(settings: GradeSettings, files: dict[str, Path], scratch_root: Path | None = None) -> CheckRun:
    """Run the hidden checks against the student's files.

    Args:
        settings: where the reference, checks and rubric are; device and limits.
        files: module name -> student file (from :class:`autograder.intake.Submission`).
        scratch_root: parent of the children's scratch folders (default: a fresh temp dir).

    Returns:
        One :class:`GroupResult` per rubric entry, in rubric order.
    """
    start = time.monotonic()
    own_scratch = scratch_root is None
    root = Path(tempfile.mkdtemp(prefix="rcnn-grade-")) if scratch_root is None else Path(scratch_root)
    os.chmod(root, 0o711)  # the sandbox user may enter its own folders, not list the others
    ini = root / "pytest.ini"
    ini.write_text("[pytest]\n")
    plugin = GraderPlugin(settings, files, root)
    args = [
        str(settings.checks_dir), "-c", str(ini), "--rootdir", str(settings.checks_dir),
        "--confcutdir", str(settings.checks_dir), "-p", "no:cacheprovider", "--assert=plain",
        "-p", "no:terminal", "-W", "ignore::pytest.PytestUnraisableExceptionWarning",
    ]
    if settings.keyword:
        args += ["-k", settings.keyword]
    try:
        code = int(pytest.main(args, plugins=[plugin]))
    finally:
        for rid in list(plugin.clients):
            plugin.close_client(rid)
        if own_scratch:
            rmtree(root)
    return CheckRun(list(plugin.results.values()), plugin.ignored, plugin.collect_errors, code, time.monotonic() - start,
                    plugin.child_starts)
