"""How a rubric group's cases turn into points: work that was not done earns nothing.

A group's score is ``points * passed / counted`` over its cases (skipped cases are not
counted), with two rules on top:

- **Edge cases count only once a main case passes.** Cases that a constant or empty
  answer can pass by accident (empty input, a single box, the static "own code" scan)
  are marked :data:`EDGE_MARK`; while no main case of the group passes, the group
  scores 0.
- **Unfinished code scores 0.** When any case of the group ends in the stub's
  ``NotImplementedError``, the TODO under test is not done and the group scores 0.

Hidden checks mark edge cases with :func:`cases` (parametrised checks) or with
``@pytest.mark.edge_case`` (a whole check function).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

#: pytest mark of a case that counts only once a main case of its group passes.
EDGE_MARK = "edge_case"
#: Exception type name of an unfinished TODO (what the stubs raise).
NOT_IMPLEMENTED = "NotImplementedError"
#: Shown when no main case passed (edge cases alone earn nothing).
NO_MAIN_CASE_TEXT = "no main case passed, so the edge cases (empty input, single box, ...) do not count yet"
#: Shown when a case raised NotImplementedError.
NOT_IMPLEMENTED_TEXT = "the function under test still raises NotImplementedError (its TODO is not done)"


def cases(all_cases: Mapping[str, Any] | Iterable[str], edge: Collection[str] = ()) -> list[Any]:
    """Parameters for ``@pytest.mark.parametrize("case", ...)``: names, edge ones marked.

    Args:
        all_cases: the case names (or a dict keyed by them), in order.
        edge: names of the cases a constant or empty answer may pass.

    Raises:
        ValueError: a name in ``edge`` is not a case.
    """
    names = list(all_cases)
    unknown = set(edge) - set(names)
    if unknown:
        raise ValueError(f"edge: {sorted(unknown)} are not among the cases {names}")
    return [pytest.param(name, marks=pytest.mark.edge_case, id=name) if name in edge else name for name in names]


def case_name(param: Any) -> str:
    """The case name of an entry of :func:`cases` (a plain name or a ``pytest.param``)."""
    values = getattr(param, "values", None)
    return str(values[0]) if values is not None else str(param)


def is_edge_param(param: Any) -> bool:
    """Whether an entry of :func:`cases` is marked as an edge case."""
    return any(getattr(mark, "name", None) == EDGE_MARK for mark in getattr(param, "marks", ()))


@dataclass
class CaseTally:
    """Counts of one group's cases, for :func:`group_fraction`."""

    main_passed: int = 0
    main_failed: int = 0
    edge_passed: int = 0
    edge_failed: int = 0
    not_implemented: int = 0

    def add(self, *, passed: bool, edge: bool, not_implemented: bool = False) -> None:
        """Record one case's outcome."""
        if edge:
            self.edge_passed += passed
            self.edge_failed += not passed
        else:
            self.main_passed += passed
            self.main_failed += not passed
        self.not_implemented += not_implemented

    @property
    def passed(self) -> int:
        return self.main_passed + self.edge_passed

    @property
    def counted(self) -> int:
        return self.passed + self.main_failed + self.edge_failed


def group_fraction(tally: CaseTally) -> tuple[float, str | None]:
    """(share of the group's points earned, the reason it is 0 when a rule applies, else None)."""
    if tally.counted == 0:
        return 0.0, None
    if tally.not_implemented:
        return 0.0, NOT_IMPLEMENTED_TEXT
    if tally.main_passed == 0 and tally.edge_passed:
        return 0.0, NO_MAIN_CASE_TEXT
    return tally.passed / tally.counted, None
