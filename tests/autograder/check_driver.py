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
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from autograder.scoring import case_name
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
    items = []
    for path in sorted(CHECKS_DIR.glob("test_*.py")):
        module = load_check_module(path)
        for name, fn in vars(module).items():
            if not name.startswith("test_") or not inspect.isfunction(fn):
                continue
            marks = _marks(fn) + _marks(module)
            rubric = next(m.args[0] for m in marks if m.name == "rubric")
            params = [m for m in marks if m.name == "parametrize"]
            cases = [case_name(p) for p in params[0].args[1]] if params else [None]
            for case in cases:
                items.append((rubric, f"{name}[{case}]" if case is not None else name, fn, case))
    return items


def run_direct(
    submission: Path, scratch: Path, ref: ModuleType, rubric_ids: Iterable[str]
) -> dict[str, list[tuple[str, bool, str]]]:
    """Run the unit-check items of ``rubric_ids`` on ``submission``: ``{id: [(item, passed, message)]}``.

    Entries of kind ``overfit`` (end-to-end training, other fixtures) are never run here.

    An AssertionError fails the item with its first line; any other exception (a student
    error in the fake) fails it with ``Type: message``.
    """
    groups = rubric_groups()
    wanted = {rid for rid in rubric_ids if groups[rid].get("kind", "unit") == "unit"}
    students: dict[str, FakeStudent] = {}
    outcomes: dict[str, list[tuple[str, bool, str]]] = defaultdict(list)
    for rubric, name, fn, case in check_items():
        if rubric not in wanted or rubric not in groups:
            continue
        try:
            if rubric not in students:
                students[rubric] = FakeStudent(submission, groups[rubric], scratch)
            fixtures = {"case": case, "student": students[rubric], "ref": ref}
            fn(**{param: fixtures[param] for param in inspect.signature(fn).parameters})
        except AssertionError as exc:
            outcomes[rubric].append((name, False, (str(exc).strip().splitlines() or [""])[0]))
        except Exception as exc:  # the student's code raised inside the fake child
            outcomes[rubric].append((name, False, f"{type(exc).__name__}: {exc}"))
        else:
            outcomes[rubric].append((name, True, ""))
    return dict(outcomes)
