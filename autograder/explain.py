"""``rcnn-kit grade --explain``: why each point was lost, for the instructor answering a regrade request.

The runner keeps, per failed case, what the student saw and what the check compared
(:class:`autograder.compare.FailureDetails`: the hidden inputs, the expected and the received
values) or the error the student's code raised. :func:`write_explain` writes them beside
results.json as

- ``explain.md``: per failed case the student's message, shapes/dtypes/ranges of expected and
  received values, the elements that differ most, and a summary of every input;
- ``explain_tensors.pt``: the full tensors, ``{case id: {"expected", "received", "inputs"}}``
  (``torch.load(path, weights_only=True)``).

Both hold hidden inputs and expected values: they are for instructors only and never go
into results.json or any other student-visible output.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from autograder.compare import Fail, FailureDetails

#: File names written beside results.json.
EXPLAIN_MD = "explain.md"
EXPLAIN_TENSORS = "explain_tensors.pt"
#: Differing elements listed per case.
TOP_DIFFERENCES = 5
#: Elements shown of each tensor when the shapes differ.
HEAD_ELEMENTS = 8


@dataclass
class ExplainRecord:
    """One failed case, as :func:`record_failure` keeps it."""

    rubric_id: str
    case_id: str
    shown: str
    details: FailureDetails | None = None
    error: dict[str, Any] = field(default_factory=dict)


def record_failure(rubric_id: str, case_id: str, shown: str, exc: BaseException | None) -> ExplainRecord:
    """What the explain report needs of one failed case (its exception as the runner caught it)."""
    if isinstance(exc, Fail):
        return ExplainRecord(rubric_id, case_id, shown, details=exc.details)
    error: dict[str, Any] = {"type": type(exc).__name__} if exc is not None else {}
    for attribute in ("kind", "exc_type", "category", "instructor_message"):
        value = getattr(exc, attribute, None)
        if value is not None:
            error[attribute] = value
    return ExplainRecord(rubric_id, case_id, shown, error=error)


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def summary_row(label: str, value: object) -> str:
    """A Markdown table row: label, shape, dtype, min, max, mean (or the type of a non-tensor)."""
    if not isinstance(value, Tensor):
        return f"| {label} | not a tensor: {type(value).__name__} | | | | |"
    t = value.detach().cpu()
    if t.numel() == 0 or t.dtype == torch.bool:
        return f"| {label} | {tuple(t.shape)} | {t.dtype} | | | |"
    d = t.double()
    finite = d[torch.isfinite(d)]
    low = _fmt(float(finite.min())) if finite.numel() else "-"
    high = _fmt(float(finite.max())) if finite.numel() else "-"
    mean = _fmt(float(finite.mean())) if finite.numel() else "-"
    nonfinite = d.numel() - finite.numel()
    extra = f" ({nonfinite} NaN/inf)" if nonfinite else ""
    return f"| {label} | {tuple(t.shape)} | {t.dtype}{extra} | {low} | {high} | {mean} |"


def differences(expected: Tensor, received: Tensor, count: int = TOP_DIFFERENCES) -> list[str]:
    """Lines ``index: expected -> received`` for the elements that differ most (or the heads when shapes differ)."""
    e, r = expected.detach().cpu().double(), received.detach().cpu().double()
    if e.shape != r.shape:
        head = lambda t: ", ".join(_fmt(float(v)) for v in t.flatten()[:HEAD_ELEMENTS])  # noqa: E731
        return [f"shapes differ; first elements: expected [{head(e)}], received [{head(r)}]"]
    if e.numel() == 0:
        return []
    gap = (e - r).abs().nan_to_num(nan=float("inf"))
    order = torch.argsort(gap.flatten(), descending=True)[:count]
    lines = []
    for flat in order.tolist():
        if float(gap.flatten()[flat]) == 0.0:
            break
        index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), e.shape)) if e.dim() else ()
        lines.append(f"{index}: {_fmt(float(e.flatten()[flat]))} -> {_fmt(float(r.flatten()[flat]))}")
    return lines


def _section(record: ExplainRecord) -> list[str]:
    lines = [f"## {record.rubric_id}: `{record.case_id}`", "", f"Student saw: {record.shown}", ""]
    if record.details is None:
        if record.error:
            lines += ["The student's code failed (instructor view of the error):", ""]
            lines += [f"- {key}: `{value}`" for key, value in record.error.items()]
        else:
            lines.append("No comparison details were recorded for this case.")
        return lines + [""]
    details = record.details
    lines += [f"Compared: `{details.what}`", "", "| | shape | dtype | min | max | mean |", "|---|---|---|---|---|---|"]
    if details.expected is not None:
        lines.append(summary_row("expected", details.expected))
    lines += [summary_row("received", details.actual), ""]
    if isinstance(details.actual, Tensor) and isinstance(details.expected, Tensor):
        diffs = differences(details.expected, details.actual)
        if diffs:
            lines += ["Largest differences (index: expected -> received):", ""] + [f"- {d}" for d in diffs] + [""]
    if details.inputs:
        lines += [f"Inputs (full tensors: `{EXPLAIN_TENSORS}`, key `{record.case_id}`):", "",
                  "| input | shape | dtype | min | max | mean |", "|---|---|---|---|---|---|"]
        lines += [summary_row(f"`{name}`", value) for name, value in details.inputs.items()] + [""]
    return lines


def _tensors(record: ExplainRecord) -> dict[str, Any]:
    details = record.details
    if details is None:
        return {}
    out: dict[str, Any] = {"inputs": {k: v.detach().cpu() for k, v in details.inputs.items() if isinstance(v, Tensor)}}
    if isinstance(details.expected, Tensor):
        out["expected"] = details.expected.detach().cpu()
    if isinstance(details.actual, Tensor):
        out["received"] = details.actual.detach().cpu()
    return out


def write_explain(records: Iterable[ExplainRecord], folder: Path, title: str = "") -> list[Path]:
    """Write explain.md and explain_tensors.pt into ``folder``; returns their paths.

    Args:
        records: the failed cases, in grading order.
        folder: the folder of results.json.
        title: a line naming the graded submission.
    """
    records = list(records)
    folder.mkdir(parents=True, exist_ok=True)
    md = [
        "# Explain report (instructor only: holds hidden inputs and expected values; never share it)",
        "",
        title or "",
        "",
        f"{len(records)} failed case(s). Each section shows what the student saw, then what the check compared.",
        "",
    ]
    for record in records:
        md += _section(record)
    md_path, pt_path = folder / EXPLAIN_MD, folder / EXPLAIN_TENSORS
    md_path.write_text("\n".join(md))
    torch.save({r.case_id: _tensors(r) for r in records if r.details is not None}, pt_path)
    return [md_path, pt_path]


def records_of(groups: Iterable[Any]) -> list[ExplainRecord]:
    """The explain records of a :class:`autograder.runner.CheckRun`'s groups, in rubric order."""
    return [record for group in groups for record in getattr(group, "explain", [])]

