"""The notebook's sanity values, recomputed from the reference at every release.

A check cell of the source notebook compares the student's result with a literal the
student can read (``expected_iou = torch.tensor([...])``). Such a literal is marked by a
comment line directly above its assignment::

    # sanity value: my_iou
    expected_iou = torch.tensor([[0.333333, 0.0, 0.0], ...])

The text after ``sanity value:`` is an expression over the cell's variables once the cell
has run. :func:`compute_sanity_values` runs the notebook's code cells, up to the last
marked one, in a separate Python process with the *reference* package as ``faster_rcnn``
(so ``my_iou`` is the reference's answer), evaluates each expression after its cell and
:func:`apply_sanity_values` writes the values back as literals. So an instructor who
changes a TODO's semantics in the reference gets the notebook's expected values updated by
``rcnn-kit release``, and ``rcnn-kit release --check`` fails while they are stale.

Values: a tensor, a number, or a dict/list of them; floats are rounded to
:data:`DECIMALS` places (the checks compare with a tolerance). A literal is rewritten only
when it differs from the computed value by more than :data:`REL_TOL` / :data:`ABS_TOL`: the
last float32 digit may differ between machines, and the release must not flip-flop.

Written by hand: nbclient/papermill run whole notebooks in a kernel, but nothing reads
values back into literals of the source.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Start of the comment line that marks the next assignment's value as computed.
MARKER = "# sanity value:"
#: Decimal places kept for floats.
DECIMALS = 6
#: Seconds the reference run of the notebook's first cells may take.
RUN_TIMEOUT_S = 600
#: A literal within this relative / absolute difference of the computed value is left as it is.
REL_TOL = 1e-4
ABS_TOL = 1e-5
#: Line length above which a list literal is split one element per line (the notebook's style).
LINE_LIMIT = 100


class SanityError(ValueError):
    """A sanity marker is malformed, or computing the values failed (the message says where)."""


def _code_cells(source: str) -> list[tuple[int, str]]:
    """``(first line number, code)`` of each code cell of a jupytext percent script (markdown skipped)."""
    cells: list[tuple[int, list[str]]] = []
    for number, line in enumerate(source.splitlines(keepends=True), start=1):
        if line.startswith("# %%"):
            cells.append((number + 1, [] if "[markdown]" not in line else ["#MARKDOWN"]))
        elif cells:
            cells[-1][1].append(line)
    return [(start, "".join(lines)) for start, lines in cells if lines[:1] != ["#MARKDOWN"]]


def find_markers(source: str) -> list[tuple[str, str, int, int]]:
    """``(target, expression, cell index, line)`` of every sanity marker, in order.

    Raises:
        SanityError: a marker is not directly above a single-name assignment.
    """
    found = []
    for index, (start, code) in enumerate(_code_cells(source)):
        lines = code.splitlines()
        for offset, line in enumerate(lines):
            if not line.strip().startswith(MARKER):
                continue
            expression = line.strip()[len(MARKER):].strip()
            where = f"line {start + offset}"
            statement = _assignment_after(code, offset + 1, where)
            if not expression:
                raise SanityError(f"{where}: `{MARKER}` needs an expression")
            found.append((statement.targets[0].id, expression, index, start + offset))  # type: ignore[attr-defined]
    return found


def _assignment_after(code: str, line: int, where: str) -> ast.Assign:
    """The assignment statement that starts on (0-based) ``line`` of ``code``."""
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        raise SanityError(f"{where}: the cell does not parse ({exc})") from exc
    for node in tree.body:
        if node.lineno == line + 1:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                return node
            break
    raise SanityError(f"{where}: `{MARKER}` must be directly above an assignment `name = <literal>`")


#: Run in a child process: execute the cells, print the values as JSON on the last line.
_RUNNER = r'''
import json, sys, torch
import rcnn_kit.checks
rcnn_kit.checks.require_all = lambda *args, **kwargs: None  # literals being recomputed may be stale: never stop
spec = json.load(open(sys.argv[1]))
namespace = {"__name__": "__main__", "display": lambda *a, **k: None}
values = {}
def plain(value):
    if isinstance(value, torch.Tensor):
        return {"__tensor__": value.detach().cpu().double().tolist(), "dtype": str(value.dtype).removeprefix("torch.")}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (bool, int, float)):
        return value
    raise TypeError(f"a sanity value must be a tensor, a number or a dict/list of them, got {type(value).__name__}")
for index, code in enumerate(spec["cells"]):
    exec(compile(code, f"<notebook cell {index}>", "exec"), namespace)
    for target, expression in spec["markers"].get(str(index), []):
        values[target] = plain(eval(expression, namespace))
print(json.dumps(values))
'''


def compute_sanity_values(source: str, reference_dir: str | Path) -> dict[str, Any]:
    """Run the notebook's code cells up to the last marker with the reference; ``{target: value}``.

    The cells run in a temporary folder holding a copy of the reference as ``faster_rcnn/``
    (what the notebook imports), offline, with the kit's packages importable.

    Raises:
        SanityError: a marker is malformed, or a cell or an expression fails (with its output).
    """
    markers = find_markers(source)
    if not markers:
        return {}
    cells = [code for _, code in _code_cells(source)][: max(index for _, _, index, _ in markers) + 1]
    by_cell: dict[str, list[tuple[str, str]]] = {}
    for target, expression, index, _ in markers:
        by_cell.setdefault(str(index), []).append((target, expression))
    kit_root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="rcnn-sanity-") as tmp:
        work = Path(tmp)
        shutil.copytree(reference_dir, work / "faster_rcnn", ignore=shutil.ignore_patterns("__pycache__"))
        (work / "spec.json").write_text(json.dumps({"cells": cells, "markers": by_cell}))
        env = {**os.environ, "RCNN_KIT_OFFLINE": "1", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join([str(work), str(kit_root), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
        proc = subprocess.run([sys.executable, "-c", _RUNNER, str(work / "spec.json")], cwd=work, env=env,
                              capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    if proc.returncode != 0:
        raise SanityError(f"running the notebook's check cells with the reference failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def apply_sanity_values(source: str, values: Mapping[str, Any]) -> tuple[str, list[str]]:
    """``source`` with each marked assignment's value replaced by its computed literal.

    Returns:
        (the new text, the targets whose literal changed).
    """
    lines = source.splitlines(keepends=True)
    changed = []
    for target, _expression, index, marker_line in reversed(find_markers(source)):
        if target not in values:
            continue
        start, code = _code_cells(source)[index]
        node = _assignment_after(code, marker_line - start + 1, f"line {marker_line}")
        if _close(_literal_value(node.value), values[target]):
            continue
        first, last = start + node.value.lineno - 1, start + (node.value.end_lineno or node.value.lineno) - 1
        head = lines[first - 1][: node.value.col_offset]
        tail = lines[last - 1][node.value.end_col_offset or 0:]
        indent = len(lines[first - 1]) - len(lines[first - 1].lstrip())
        literal = _literal(values[target], indent, len(head))
        old = "".join(lines[first - 1: last])
        new = head + literal + tail
        if old != new:
            lines[first - 1: last] = [new]
            changed.append(target)
    return "".join(lines), sorted(changed)


def _literal_value(node: ast.expr) -> Any:
    """The value an (unmodified) literal in the source stands for, or None when it is not a literal."""
    if isinstance(node, ast.Call) and node.args and ast.unparse(node.func) == "torch.tensor":
        node = node.args[0]
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None


def _close(current: Any, computed: Any) -> bool:
    """Whether the literal in the source already stands for the computed value (within the tolerances)."""
    if isinstance(computed, dict) and "__tensor__" in computed:
        computed = computed["__tensor__"]
    if isinstance(computed, dict):
        return isinstance(current, dict) and current.keys() == computed.keys() and all(
            _close(current[k], computed[k]) for k in computed)
    if isinstance(computed, list):
        return isinstance(current, list) and len(current) == len(computed) and all(
            _close(a, b) for a, b in zip(current, computed))
    if isinstance(current, bool) or not isinstance(current, (int, float)):
        return False
    return abs(current - computed) <= ABS_TOL + REL_TOL * abs(computed)


def _number(value: float | int | bool) -> str:
    if isinstance(value, bool) or isinstance(value, int):
        return repr(value)
    value = round(float(value), DECIMALS) + 0.0  # + 0.0: no "-0.0"
    if value != 0 and abs(value) >= 1e6 and value == int(value):
        mantissa, exponent = f"{value:.0e}".split("e")
        return f"{mantissa}e{int(exponent)}"  # -1e8, as the course writes IGNORED_DELTA
    return repr(value)


def _plain_literal(value: Any) -> str:
    if isinstance(value, dict) and "__tensor__" not in value:
        return "{" + ", ".join(f"{json.dumps(k)}: {_plain_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_plain_literal(v) for v in value) + "]"
    return _number(value)


def _literal(value: Any, indent: int, column: int) -> str:
    """Python source of ``value``: ``torch.tensor(...)`` for tensors, split over lines when long."""
    if isinstance(value, dict) and "__tensor__" in value:
        data, dtype = value["__tensor__"], value["dtype"]
        suffix = "" if dtype == "float32" or (dtype == "int64" and _all_ints(data)) else f", dtype=torch.{dtype}"
        if dtype.startswith("int") or dtype == "bool":
            data = _to_ints(data, dtype == "bool")
        one_line = f"torch.tensor({_plain_literal(data)}{suffix})"
        if column + len(one_line) <= LINE_LIMIT or not isinstance(data, list) or not data or not isinstance(data[0], list):
            return one_line
        pad = " " * indent
        rows = "".join(f"{pad}        {_plain_literal(row)},\n" for row in data)
        return f"torch.tensor(\n{pad}    [\n{rows}{pad}    ]{suffix}\n{pad})"
    return _plain_literal(value)


def _all_ints(data: Any) -> bool:
    return all(_all_ints(v) for v in data) if isinstance(data, list) else float(data) == int(data)


def _to_ints(data: Any, as_bool: bool) -> Any:
    if isinstance(data, list):
        return [_to_ints(v, as_bool) for v in data]
    return bool(data) if as_bool else int(data)
