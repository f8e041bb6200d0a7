"""Run hidden-check functions directly (no pytest session, no sandbox): the kit's fast path.

The hidden checks are plain functions whose parameters are among ``case``, ``student`` and
``ref``, with a ``rubric`` mark and at most one ``parametrize`` mark over ``case``. This driver calls
them with an in-process :class:`fake_student.FakeStudent`, which makes checking dozens of
corpus submissions take seconds. The real runner (child processes) is exercised by
test_corpus.py on every entry's own groups.
"""

from __future__ import annotations

import importlib.util
import inspect
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from autograder.sandbox import StudentError
from autograder.scoring import EDGE_MARK, NOT_IMPLEMENTED, CaseTally, case_name, group_fraction, is_edge_param
from fake_student import FakeStudent, rubric_groups

CHECKS_DIR = Path(__file__).resolve().parents[2] / "autograder" / "checks"


def load_check_module(path: Path) -> ModuleType:
    """Import a hidden-check file under a private module name (never the runner's)."""
    spec = importlib.util.spec_from_file_location(f"kit_checks_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():  # the runner registers the `rubric` mark; this driver needs no registration
        warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
        spec.loader.exec_module(module)
    return module


def _marks(obj: Any) -> list[Any]:
    marks = getattr(obj, "pytestmark", [])
    return list(marks) if isinstance(marks, list) else [marks]


def check_items() -> list[tuple[str, str, Callable[..., None], Any]]:
    """``[(rubric id, item name, function, case or None)]`` for every hidden check item."""
    return [(rubric, name, fn, case) for rubric, name, fn, case, _ in _items()]


def _items() -> list[tuple[str, str, Callable[..., None], Any, bool]]:
    """As :func:`check_items`, plus whether the item is an edge case (counts once a main case passes)."""
    items = []
    for path in sorted(CHECKS_DIR.glob("test_*.py")):
        module = load_check_module(path)
        for name, fn in vars(module).items():
            if not name.startswith("test_") or not inspect.isfunction(fn):
                continue
            marks = _marks(fn) + _marks(module)
            rubric = next(m.args[0] for m in marks if m.name == "rubric")
            edge_fn = any(m.name == EDGE_MARK for m in marks)
            params = [m for m in marks if m.name == "parametrize"]
            cases = [(case_name(p), is_edge_param(p)) for p in params[0].args[1]] if params else [(None, False)]
            for case, edge in cases:
                items.append((rubric, f"{name}[{case}]" if case is not None else name, fn, case, edge or edge_fn))
    return items


@dataclass(frozen=True)
class Outcome:
    """One item's outcome in :func:`run_direct_outcomes`."""

    name: str
    passed: bool
    message: str
    edge: bool = False
    not_implemented: bool = False


def run_direct_outcomes(
    submission: Path, scratch: Path, ref: ModuleType, rubric_ids: Iterable[str]
) -> dict[str, list[Outcome]]:
    """Run the unit-check items of ``rubric_ids`` on ``submission``: ``{id: [Outcome, ...]}``.

    Entries of kind ``overfit`` (end-to-end training, other fixtures) are never run here.
    A failure's message is what the runner shows: the first line of the AssertionError or
    of the StudentError (the fake student raises those as the sandbox does); any other
    exception (the fake could not even build the package) reads ``Type: message``.
    """
    groups = rubric_groups()
    wanted = {rid for rid in rubric_ids if groups[rid].get("kind", "unit") == "unit"}
    students: dict[str, FakeStudent] = {}
    outcomes: dict[str, list[Outcome]] = defaultdict(list)
    for rubric, name, fn, case, edge in _items():
        if rubric not in wanted or rubric not in groups:
            continue
        try:
            if rubric not in students:
                students[rubric] = FakeStudent(submission, groups[rubric], scratch)
            fixtures = {"case": case, "student": students[rubric], "ref": ref}
            fn(**{param: fixtures[param] for param in inspect.signature(fn).parameters})
        except (AssertionError, StudentError) as exc:
            unfinished = isinstance(exc, StudentError) and exc.exc_type == NOT_IMPLEMENTED
            outcomes[rubric].append(Outcome(name, False, first_line(str(exc)), edge, unfinished))
        except Exception as exc:  # the fake student could not be built (import error)
            unfinished = isinstance(exc, NotImplementedError)
            outcomes[rubric].append(Outcome(name, False, f"{type(exc).__name__}: {exc}", edge, unfinished))
        else:
            outcomes[rubric].append(Outcome(name, True, "", edge))
    return dict(outcomes)


def run_direct(
    submission: Path, scratch: Path, ref: ModuleType, rubric_ids: Iterable[str]
) -> dict[str, list[tuple[str, bool, str]]]:
    """:func:`run_direct_outcomes` as ``{id: [(item, passed, message)]}``."""
    results = run_direct_outcomes(submission, scratch, ref, rubric_ids)
    return {rid: [(o.name, o.passed, o.message) for o in items] for rid, items in results.items()}


def group_score(outcomes: list[Outcome]) -> float:
    """The share of a group's points the outcomes earn, by the runner's scoring rules."""
    tally = CaseTally()
    for outcome in outcomes:
        tally.add(passed=outcome.passed, edge=outcome.edge, not_implemented=outcome.not_implemented)
    return group_fraction(tally)[0]


def first_line(text: str) -> str:
    """The first line of a failure, as the runner shows it (before its length cut)."""
    return (text.strip().splitlines() or [""])[0]
