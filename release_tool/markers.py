"""Turn a reference module with nbgrader-style markers into a student stub.

The reference files in ``solutions/faster_rcnn/`` fence the student's work with
whole-line comments::

    def iou(boxes1, boxes2):
        \"\"\"...docstring (the specification) stays...\"\"\"
        # Instructions for the student stay too: they sit above the marker.
        ### BEGIN SOLUTION
        ...reference code, removed from the release...
        ### END SOLUTION

:func:`stub_source` replaces every solution region by a TODO block at the
indentation of its ``BEGIN`` marker whose body raises ``NotImplementedError``
naming the enclosing function and the file. A region outside any function (at
module level or directly in a class body) becomes ``pass`` instead, so the
stub still imports. ``### BEGIN HIDDEN`` / ``### END HIDDEN`` regions are
dropped without a trace. Line endings (LF or CRLF) and indentation (tabs or
spaces) are kept exactly as the reference has them.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from rcnn_kit.unfinished import TODO_COMMENT, stub_message

#: Marker comments, as instructors type them (the same words nbgrader uses).
BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
BEGIN_HIDDEN = "### BEGIN HIDDEN"
END_HIDDEN = "### END HIDDEN"

#: A marker line: optional indentation, the marker, optional trailing blanks, then the line end.
_MARKER_RE = re.compile(
    r"^(?P<indent>[ \t]*)###[ ]+(?P<kind>BEGIN|END)[ ]+(?P<what>SOLUTION|HIDDEN)[ \t]*(?:\r\n|\n|\r)?$"
)
#: Anything that looks like an attempt at a marker (a comment naming one); used to
#: reject typos such as ``## BEGIN SOLUTION`` or ``### BEGIN SOLUTION here`` that
#: would otherwise leak the solution into the release silently.
_MARKER_LIKE_RE = re.compile(r"^[ \t]*#.*\b(?:BEGIN|END)[ \t]+(?:SOLUTION|HIDDEN)\b")

#: The comment written above the ``raise`` that replaces a solution region (``TODO_COMMENT``)
#: and that raise's message (``stub_message``) live in the runtime (rcnn_kit.unfinished):
#: the student bundle's ``submit`` recognises unfinished stubs without release_tool.
#: Statement that replaces a solution region outside any function, so the module imports.
PLACEHOLDER_STATEMENT = "pass"
#: Comment written above that placeholder.
PLACEHOLDER_COMMENT = "# TODO: your code here (replace the pass below)."


class MarkerError(ValueError):
    """A reference file's markers are malformed; the message names ``file:line``."""


@dataclass(frozen=True)
class _Region:
    """One fenced region of a reference file (line numbers are 1-based, inclusive)."""

    what: str  # "SOLUTION" or "HIDDEN"
    begin: int  # line of the BEGIN marker
    end: int  # line of the END marker
    indent: str  # indentation of the BEGIN marker, verbatim


def _find_regions(lines: list[str], filename: str) -> list[_Region]:
    """Pair BEGIN/END markers; reject nesting, unclosed or unopened regions and typos.

    Args:
        lines: the file split with ``keepends=True``.
        filename: shown in error messages.

    Raises:
        MarkerError: naming ``filename:line`` and what is wrong there.
    """
    regions: list[_Region] = []
    open_what: str | None = None
    open_line = 0
    open_indent = ""
    for number, line in enumerate(lines, start=1):
        match = _MARKER_RE.match(line)
        if match is None:
            if _MARKER_LIKE_RE.match(line):
                raise MarkerError(
                    f"{filename}:{number}: malformed marker {line.strip()!r}; write the whole line "
                    f"as {BEGIN_SOLUTION!r}, {END_SOLUTION!r}, {BEGIN_HIDDEN!r} or {END_HIDDEN!r}"
                )
            continue
        kind, what, indent = match["kind"], match["what"], match["indent"]
        if kind == "BEGIN":
            if open_what is not None:
                raise MarkerError(
                    f"{filename}:{number}: nested marker '### BEGIN {what}' inside the "
                    f"'### BEGIN {open_what}' region opened at line {open_line}; close that region first"
                )
            open_what, open_line, open_indent = what, number, indent
            continue
        if open_what is None:
            raise MarkerError(f"{filename}:{number}: '### END {what}' without a matching '### BEGIN {what}'")
        if what != open_what:
            raise MarkerError(
                f"{filename}:{number}: '### END {what}' closes the '### BEGIN {open_what}' region "
                f"opened at line {open_line}; expected '### END {open_what}'"
            )
        if indent != open_indent:
            raise MarkerError(
                f"{filename}:{number}: '### END {what}' is indented {indent!r} but its BEGIN at "
                f"line {open_line} is indented {open_indent!r}; fence a region at one indentation"
            )
        regions.append(_Region(what=what, begin=open_line, end=number, indent=open_indent))
        open_what = None
    if open_what is not None:
        raise MarkerError(
            f"{filename}:{open_line}: '### BEGIN {open_what}' is never closed by '### END {open_what}'"
        )
    return regions


def _scopes(tree: ast.Module) -> list[tuple[int, int, str, bool]]:
    """Every def/class as ``(first_line, last_line, dotted_name, is_function)``.

    ``dotted_name`` joins the enclosing classes and functions, e.g. ``RPN.forward``
    or ``outer.inner``. The first line is the ``def``/``class`` line (decorators excluded).
    """
    found: list[tuple[int, int, str, bool]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                end = child.end_lineno if child.end_lineno is not None else child.lineno
                found.append((child.lineno, end, name, not isinstance(child, ast.ClassDef)))
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def _enclosing_scope(scopes: list[tuple[int, int, str, bool]], line: int) -> tuple[str, bool] | None:
    """Innermost def/class whose body contains ``line``: ``(dotted_name, is_function)``."""
    best: tuple[int, str, bool] | None = None
    for first, last, name, is_function in scopes:
        if first < line <= last and (best is None or first > best[0]):
            best = (first, name, is_function)
    return None if best is None else (best[1], best[2])


def _line_ending(line: str) -> str:
    """The line's own ending (``"\\r\\n"``, ``"\\n"``, ``"\\r"``), or ``"\\n"`` when it has none."""
    for ending in ("\r\n", "\n", "\r"):
        if line.endswith(ending):
            return ending
    return "\n"


def stub_source(text: str, filename: str) -> str:
    """Turn the text of a reference module into the student's stub.

    Args:
        text: the reference file's text (LF or CRLF line endings, tabs or spaces).
        filename: the name shown in messages and in each ``NotImplementedError``,
            e.g. ``"faster_rcnn/iou.py"``.

    Returns:
        The stub text: solution regions replaced by TODO blocks (``raise
        NotImplementedError("<function> in <filename>: ...")`` inside a function,
        ``pass`` elsewhere), hidden regions removed, everything else unchanged.

    Raises:
        MarkerError: nested, unclosed, unopened, mismatched or malformed markers,
            a reference that does not parse, or a stub that would not parse
            (e.g. a region that splits a statement); the message names
            ``filename:line``.
    """
    lines = text.splitlines(keepends=True)
    regions = _find_regions(lines, filename)
    if not regions:
        return text
    try:
        tree = ast.parse(text, filename=filename)
    except SyntaxError as exc:
        raise MarkerError(f"{filename}:{exc.lineno}: the reference does not parse: {exc.msg}") from exc
    scopes = _scopes(tree)

    out: list[str] = []
    cursor = 0  # index into ``lines`` of the next line to copy
    for region in regions:
        out.extend(lines[cursor : region.begin - 1])
        cursor = region.end  # skip the region, markers included
        if region.what == "HIDDEN":
            continue
        eol = _line_ending(lines[region.begin - 1])
        scope = _enclosing_scope(scopes, region.begin)
        if scope is not None and scope[1]:
            message = stub_message(scope[0], filename)
            out.append(f"{region.indent}{TODO_COMMENT}{eol}")
            out.append(f"{region.indent}raise NotImplementedError({message!r}){eol}")
        else:
            out.append(f"{region.indent}{PLACEHOLDER_COMMENT}{eol}")
            out.append(f"{region.indent}{PLACEHOLDER_STATEMENT}{eol}")
    out.extend(lines[cursor:])
    stub = "".join(out)
    try:
        ast.parse(stub, filename=filename)
    except SyntaxError as exc:
        raise MarkerError(
            f"{filename}: the stub made from this file does not parse at stub line {exc.lineno} "
            f"({exc.msg}); check that each region fences whole statements at one indentation"
        ) from exc
    return stub
