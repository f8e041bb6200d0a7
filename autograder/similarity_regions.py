"""The student-written code of a submission, cut into regions and normalised for fingerprinting.

A region is one function or method: each one that holds a TODO in the stub (named like
``rpn.RPN.forward``), and each function a student added (a helper). Its student-written
tokens are the tokens of its body minus the docstring and minus every line that is also a
line of the stub's own function (given code, the TODO comment and ``raise``), compared
token by token so whitespace and comments do not matter. Functions the stub gives in full
(``nms.class_spec_nms``, ...) are not student code and are skipped.

Normalisation keeps what a copier cannot cheaply change and hides what they can: every
identifier becomes ``V`` unless it is a keyword, a builtin, a name the stub's code uses
(its parameters, imports, given helpers), a keyword argument of a call, or an attribute
known to torch, Python's containers or the stub; strings become ``S``; numbers and
operators stay. Each normalised token is then one character, so copydetect's character
k-grams are k-grams of tokens.

Written here (no library does it): locating the TODO regions and mapping tokens back to
the student's text, which the side-by-side report needs.
"""

from __future__ import annotations

import ast
import bisect
import builtins
import functools
import io
import keyword
import math
import re
import tokenize
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from autograder.intake import load_submission
from rcnn_kit.course import PACKAGE_NAME, STUDENT_MODULES, rmtree
from release_tool.markers import PLACEHOLDER_COMMENT, TODO_COMMENT, stub_source

#: Normalised key of an identifier the student chose.
PLACEHOLDER = "V"
#: Normalised key of a string literal (an f-string counts as one).
STRING_KEY = "S"
#: Token types that carry no code (layout and comments).
_LAYOUT = frozenset({tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                     tokenize.ENCODING, tokenize.ENDMARKER})
#: f-string parts (Python 3.12+ tokenizes f-strings piece by piece; 3.10/3.11 give one STRING).
_FSTRING_START = getattr(tokenize, "FSTRING_START", None)
_FSTRING_END = getattr(tokenize, "FSTRING_END", None)
#: Region name suffix for a module that does not parse (its code is one region).
UNPARSED = "<unparsed>"
#: Brackets, and the tokens after which ``name=`` inside brackets is a keyword argument.
_OPENING, _CLOSING, _ARGUMENT_START = frozenset("([{"), frozenset(")]}"), frozenset({"(", ","})
#: The comment lines the stub writes where a TODO region was.
_TODO_LINES = frozenset({TODO_COMMENT, PLACEHOLDER_COMMENT})
#: Scope of a student's helper: no given lines, no names beyond the global ones.
_HELPER_SCOPE = ("", "")
#: An identifier anywhere in a stub's text (code, comments, docstrings).
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Token(NamedTuple):
    """One student-written token: its normalised key and its span in the region's text."""

    key: str
    start: int
    end: int


@dataclass
class Region:
    """One function of a submission.

    Attributes:
        name: ``module.qualname``, e.g. ``rpn.RPN.forward``.
        todo: whether the stub holds a TODO in this function (False: a student's helper).
        text: the function's source as the student wrote it (def line to last line).
        tokens: its student-written tokens, in order, with spans into ``text``.
    """

    name: str
    todo: bool
    text: str
    tokens: list[Token] = field(default_factory=list)


@dataclass(frozen=True)
class StubModel:
    """What the stub gives, per module.

    Attributes:
        todo_functions: module -> qualnames of the functions holding a TODO, in file order.
        given_functions: module -> qualnames of every function of the stub.
        given_lines: ``(module, qualname)`` -> token strings of each code line of the
            stub's function (module -> those of the whole stub module under qualname "").
        names: identifiers kept everywhere: keywords, builtins, the stubs' module-level names.
        local_names: ``(module, qualname)`` -> identifiers also kept in that function: its
            parameters and the names its given code uses (every name of the module under "").
        attributes: attribute names kept: torch's and Python's API and every identifier the
            stubs mention (``self.pred_obj`` is named only in a comment).
        stub_texts: module -> the stub's text.
    """

    todo_functions: dict[str, tuple[str, ...]]
    given_functions: dict[str, frozenset[str]]
    given_lines: dict[tuple[str, str], frozenset[tuple[str, ...]]]
    names: frozenset[str]
    local_names: dict[tuple[str, str], frozenset[str]]
    attributes: frozenset[str]
    stub_texts: dict[str, str]


def load_stub_model(reference_dir: str | Path) -> StubModel:
    """Build the stub of each reference module (as ``rcnn-kit release`` does) and index it.

    Args:
        reference_dir: the reference ``faster_rcnn`` folder (with SOLUTION markers).

    Raises:
        FileNotFoundError: a module file is missing from ``reference_dir``.
        release_tool.markers.MarkerError: a reference file's markers are malformed.
    """
    todo: dict[str, tuple[str, ...]] = {}
    given: dict[str, frozenset[str]] = {}
    given_lines: dict[tuple[str, str], frozenset[tuple[str, ...]]] = {}
    local_names: dict[tuple[str, str], frozenset[str]] = {}
    stubs: dict[str, str] = {}
    names: set[str] = set(keyword.kwlist) | set(keyword.softkwlist) | set(dir(builtins))
    mentioned: set[str] = set()
    for module in STUDENT_MODULES:
        path = Path(reference_dir) / f"{module}.py"
        stub = _clean(stub_source(path.read_text(encoding="utf-8"), f"{PACKAGE_NAME}/{path.name}"))
        stubs[module] = stub
        mentioned.update(_IDENTIFIER.findall(stub))
        tree = ast.parse(stub)
        names.update(_module_level_names(tree))
        rows = _line_keys(_tokens(stub))
        given_lines[(module, "")] = frozenset(rows.values())
        local_names[(module, "")] = frozenset(s for key in rows.values() for s in key if s.isidentifier())
        functions = _functions(tree)
        given[module] = frozenset(functions)
        lines = stub.splitlines()
        for qualname, node in functions.items():
            keys = [rows[r] for r in range(node.lineno, _end(node) + 1) if r in rows]
            given_lines[(module, qualname)] = frozenset(keys)
            arguments = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
            arguments += [a for a in (node.args.vararg, node.args.kwarg) if a is not None]
            local_names[(module, qualname)] = frozenset(
                {a.arg for a in arguments} | {s for key in keys for s in key if s.isidentifier()}
            )
        todo[module] = tuple(
            q for q, node in functions.items()
            if any(line.strip() in _TODO_LINES for line in lines[node.lineno - 1 : _end(node)])
        )
    return StubModel(todo, given, given_lines, frozenset(names), local_names,
                     frozenset(mentioned | _api_names()), stubs)


def extract_regions(text: str, module: str, model: StubModel) -> list[Region]:
    """The student-written regions of one module file.

    Module-level statements a student adds (imports, constants) are not regions.

    Args:
        text: the submitted module's text.
        module: its name, one of ``rcnn_kit.course.STUDENT_MODULES``.
        model: the stub index from :func:`load_stub_model`.

    Returns:
        The regions holding at least one student-written token: TODO functions in the
        stub's order, then the student's helpers in file order. A file that does not
        parse gives one region, ``<module>.<unparsed>``, holding its lines that are not
        lines of the stub.

    Raises:
        ValueError: ``module`` is not one of the student modules.
    """
    if module not in model.todo_functions:
        raise ValueError(f"module: expected one of {STUDENT_MODULES}, got {module!r}")
    text = _clean(text)
    try:
        functions = _functions(ast.parse(text))
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # null bytes; nesting too deep for the parser
        region = _region(f"{module}.{UNPARSED}", False, text, 1, (0, 0), model.given_lines[(module, "")],
                         model.names | model.local_names[(module, "")], model.attributes)
        return [region] if region is not None else []
    starts = _line_starts(text)
    todo_regions: dict[str, Region] = {}
    helpers: list[Region] = []
    for qualname, node in functions.items():
        is_todo = qualname in model.todo_functions[module]
        docstring = _has_docstring(node)
        body = node.body[1:] if docstring else node.body
        if not body or (not is_todo and qualname in model.given_functions[module]):  # given in full
            continue
        first = node.lineno
        doc_rows = (node.body[0].lineno - first + 1, _end(node.body[0]) - first + 1) if docstring else (0, 0)
        scope = (module, qualname) if is_todo else _HELPER_SCOPE
        region = _region(f"{module}.{qualname}", is_todo, text[starts[first - 1] : starts[_end(node)]],
                         body[0].lineno - first + 1, doc_rows, model.given_lines.get(scope, frozenset()),
                         model.names | model.local_names.get(scope, frozenset()), model.attributes)
        if region is not None and is_todo:
            todo_regions[qualname] = region
        elif region is not None:
            helpers.append(region)
    return [todo_regions[q] for q in model.todo_functions[module] if q in todo_regions] + helpers


def canonical_order(regions_per_module: dict[str, list[Region]]) -> list[Region]:
    """TODO regions in module and stub order, then each module's helpers sorted by normalised code.

    The order does not depend on where a student put each function in a file.
    """
    ordered: list[Region] = []
    for module in STUDENT_MODULES:
        regions = regions_per_module.get(module, [])
        ordered += [r for r in regions if r.todo]
        ordered += sorted((r for r in regions if not r.todo), key=lambda r: [t.key for t in r.tokens])
    return ordered


def submission_regions(source: Path, model: StubModel, scratch: Path) -> tuple[list[Region], str]:
    """The student-written regions of one submission in :func:`canonical_order`, and a note.

    Args:
        source: a zip or folder, unpacked with :func:`autograder.intake.load_submission`.
        model: the stub index.
        scratch: a folder that does not exist yet (removed again before returning).

    Returns:
        ``(regions, note)``: the note lists the intake's problems, or says that the
        submission holds no student-written code; it is empty when all is well.
    """
    try:
        submission = load_submission(source, scratch)
        per_module = {
            module: extract_regions(path.read_bytes().decode("utf-8", errors="replace"), module, model)
            for module, path in submission.found.items()
        }
    finally:
        rmtree(scratch)
    regions = canonical_order(per_module)
    notes = list(submission.problems)
    if not regions and submission.found:
        notes.append("no student-written code (every TODO left as in the stub)")
    return regions, "; ".join(notes)


def _region(name: str, is_todo: bool, text: str, body_row: int, doc_rows: tuple[int, int],
            given: frozenset[tuple[str, ...]], names: frozenset[str], attributes: frozenset[str]) -> Region | None:
    """The region of one function's ``text`` (rows counted from its first line), or None when empty.

    Args:
        body_row: the row of the first statement after the docstring.
        doc_rows: first and last row of the docstring, (0, 0) without one.
        given: token strings of the stub's lines; equal lines are not the student's.
    """
    tokens = _tokens(text)
    code = _Code(tokens, _line_starts(text))
    skip = {row for row, key in _line_keys(tokens).items() if key in given}
    shown, cut = text, 0  # the report shows the function without its docstring
    doc_first, doc_last = doc_rows
    if 1 < doc_first and doc_last < body_row:
        cut = code.starts[doc_last] - code.starts[doc_first - 1]
        shown = text[: code.starts[doc_first - 1]] + text[code.starts[doc_last] :]
    selected = code.select(body_row, len(code.starts) - 1, skip, cut, names, attributes)
    return Region(name, is_todo, shown, selected) if selected else None


def stub_tokens(module: str, model: StubModel) -> list[Token]:
    """Every code token of the stub module, normalised like a student's (for boilerplate)."""
    text = model.stub_texts[module]
    names = model.names | model.local_names[(module, "")]
    return _Code(_tokens(text), _line_starts(text)).select(1, text.count("\n") + 1, set(), 0, names, model.attributes)


def normalised_keys(
    tokens: list[tokenize.TokenInfo], names: frozenset[str], attributes: frozenset[str]
) -> list[str | None]:
    """The normalised key of each token (None for layout and comments).

    Args:
        tokens: consecutive tokens from :func:`_tokens`, starting at the start of a statement.
        names: identifiers kept as they are (any other identifier becomes ``V``).
        attributes: attribute names (after a dot) kept as they are.
    """
    keys: list[str | None] = []
    depth = 0  # bracket depth, to tell keyword arguments from assignments
    previous: tokenize.TokenInfo | None = None
    for i, tok in enumerate(tokens):
        if tok.type in _LAYOUT:
            keys.append(None)
            continue
        if tok.type == tokenize.OP:
            depth += tok.string in _OPENING
            depth -= tok.string in _CLOSING
            key = tok.string
        elif tok.type == tokenize.STRING:
            key = STRING_KEY
        elif tok.type == tokenize.NUMBER:
            key = tok.string.lower()
        elif tok.type == tokenize.NAME:
            following = tokens[i + 1].string if i + 1 < len(tokens) else ""
            if previous is not None and previous.string == ".":
                key = tok.string if tok.string in attributes else PLACEHOLDER
            elif depth and following == "=" and previous is not None and previous.string in _ARGUMENT_START:
                key = tok.string  # a keyword argument names the callee's parameter
            else:
                key = tok.string if tok.string in names else PLACEHOLDER
        else:  # ERRORTOKEN and the like in a file that does not tokenize cleanly
            key = tok.string
        keys.append(key)
        previous = tok
    return keys


def _clean(text: str) -> str:
    """Unix line endings, so that ``ast`` and ``tokenize`` agree on line numbers."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _tokens(text: str) -> list[tokenize.TokenInfo]:
    """Tokens of ``text``, each f-string one STRING token as before Python 3.12.

    A file that stops tokenizing keeps the tokens read so far.
    """
    found: list[tokenize.TokenInfo] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            found.append(tok)
    except (tokenize.TokenError, SyntaxError):
        pass  # the tokens before the error are still the student's code
    if _FSTRING_START is None:
        return found
    starts = _line_starts(text)
    merged: list[tokenize.TokenInfo] = []
    opened: list[tokenize.TokenInfo] = []  # FSTRING_START of the f-strings open around the current token
    for tok in found:
        if tok.type == _FSTRING_START:
            opened.append(tok)
        elif tok.type == _FSTRING_END and opened:
            first = opened.pop()
            if not opened:
                source = text[starts[first.start[0] - 1] + first.start[1] : starts[tok.end[0] - 1] + tok.end[1]]
                merged.append(tokenize.TokenInfo(tokenize.STRING, source, first.start, tok.end, first.line))
        elif not opened:
            merged.append(tok)
    return merged


def _line_keys(tokens: list[tokenize.TokenInfo]) -> dict[int, tuple[str, ...]]:
    """``{row: code tokens starting on that row}`` for rows that hold code."""
    rows: dict[int, list[str]] = {}
    for tok in tokens:
        if tok.type not in _LAYOUT:
            rows.setdefault(tok.start[0], []).append(tok.string)
    return {row: tuple(strings) for row, strings in rows.items()}


def _line_starts(text: str) -> list[int]:
    """Offset of the first character of each line (index 0 is line 1), plus the text's end."""
    starts = [0]
    for line in io.StringIO(text):
        starts.append(starts[-1] + len(line))
    return starts


class _Code:
    """A file's tokens without layout and comments, searchable by line."""

    def __init__(self, tokens: list[tokenize.TokenInfo], starts: list[int]) -> None:
        self.tokens = [tok for tok in tokens if tok.type not in _LAYOUT]
        self.rows = [tok.start[0] for tok in self.tokens]
        self.starts = starts

    def select(self, first: int, last: int, skip: set[int], offset: int,
               names: frozenset[str], attributes: frozenset[str]) -> list[Token]:
        """Normalised tokens starting on rows ``first..last`` except ``skip``; spans relative to ``offset``."""
        starts, selected = self.starts, []
        lo, hi = bisect.bisect_left(self.rows, first), bisect.bisect_right(self.rows, last)
        tokens = self.tokens[lo:hi]
        for tok, key in zip(tokens, normalised_keys(tokens, names, attributes)):
            (row, col), (end_row, end_col) = tok.start, tok.end
            if key is not None and row not in skip:
                end_row = min(end_row, len(starts) - 1)
                selected.append(Token(key, starts[row - 1] + col - offset, starts[end_row - 1] + end_col - offset))
        return selected


def _module_level_names(tree: ast.Module) -> set[str]:
    """Names a module binds at its top level: imports, functions, classes, assigned constants."""
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
    return found


def _functions(tree: ast.Module) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    """Module-level functions and methods (classes nest), by qualname; nested functions stay in their parent.

    A name defined twice keeps its qualname for the last definition (the one Python uses);
    an earlier one is listed as ``qualname@line``, so its code is still compared.
    """
    found: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                qualname = prefix + node.name
                if qualname in found:
                    earlier = found.pop(qualname)
                    found[f"{qualname}@{earlier.lineno}"] = earlier
                found[qualname] = node
            elif isinstance(node, ast.ClassDef):
                visit(node.body, f"{prefix}{node.name}.")

    visit(tree.body, "")
    return found


def _end(node: ast.AST) -> int:
    end = getattr(node, "end_lineno", None)
    return end if end is not None else node.lineno  # type: ignore[attr-defined]


def _has_docstring(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    first = node.body[0]
    return isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)


@functools.cache
def _api_names() -> frozenset[str]:
    """Attribute names of torch's public API and of Python's containers (kept by the normalisation)."""
    import torch
    from torch import nn

    spaces: list[object] = [torch, torch.Tensor, nn, nn.functional, nn.init, nn.Module, math,
                            list, dict, str, tuple, set, float, int]
    return frozenset(name for space in spaces for name in dir(space) if not name.startswith("__"))
