"""Which functions of a student's ``faster_rcnn`` package are still TODO stubs.

The release tool (``release_tool.markers``) turns every solution region inside a
function into::

    # TODO: your code here (replace the raise below).
    raise NotImplementedError("<function> in faster_rcnn/<module>.py: TODO not implemented yet")

The texts are defined here, in the runtime, because the student bundle carries
``rcnn_kit`` but not ``release_tool``: ``submit`` must recognise unfinished work
from the bundle alone. :func:`find_unfinished` reads the files with :mod:`ast`
(nothing is imported or run): a function or method whose own body raises
``NotImplementedError`` (as a class or a call, at any depth of its statements but
not inside a nested function) is unfinished.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from rcnn_kit.course import PACKAGE_NAME, STUDENT_MODULES

#: Comment the release writes above the ``raise`` that replaces a solution region.
TODO_COMMENT = "# TODO: your code here (replace the raise below)."
#: End of the message of that ``raise``; see :func:`stub_message`.
STUB_MESSAGE_SUFFIX = "TODO not implemented yet"
#: The exception a stub raises.
STUB_EXCEPTION = "NotImplementedError"


def stub_message(qualname: str, filename: str) -> str:
    """The ``NotImplementedError`` message of a stub, e.g. ``"RPN.forward in faster_rcnn/rpn.py: TODO ..."``.

    Args:
        qualname: the enclosing function, dotted through classes (``RPN.forward``).
        filename: the module as students see it (``faster_rcnn/rpn.py``).
    """
    return f"{qualname} in {filename}: {STUB_MESSAGE_SUFFIX}"


@dataclass(frozen=True)
class UnfinishedFunction:
    """A function whose body still raises ``NotImplementedError``.

    Attributes:
        path: the module, as ``faster_rcnn/<module>.py``.
        qualname: dotted name (``RPN.forward``).
        lines: line numbers of its ``raise NotImplementedError`` statements.
        is_stub: True when a raise still carries the release's TODO message.
    """

    path: str
    qualname: str
    lines: tuple[int, ...]
    is_stub: bool

    def describe(self) -> str:
        """One line for a listing, e.g. ``faster_rcnn/rpn.py:210 RPN.forward (2 TODO blocks)``."""
        count = len(self.lines)
        note = f" ({count} TODO blocks)" if count > 1 else ""
        if not self.is_stub:
            note += f" (raises {STUB_EXCEPTION} without the TODO message: your own raise?)"
        return f"{self.path}:{self.lines[0]} {self.qualname}{note}"


def _raises_not_implemented(node: ast.Raise) -> bool:
    """``raise NotImplementedError`` or ``raise NotImplementedError(...)``."""
    exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
    return isinstance(exc, ast.Name) and exc.id == STUB_EXCEPTION


def _own_raises(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.Raise]:
    """The ``raise NotImplementedError`` statements of ``function``, not of functions nested in it."""
    found: list[ast.Raise] = []
    pending: list[ast.AST] = list(function.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Raise) and node.exc is not None and _raises_not_implemented(node):
            found.append(node)
        pending.extend(ast.iter_child_nodes(node))
    return sorted(found, key=lambda n: n.lineno)


def unfinished_in_source(source: str, path: str) -> list[UnfinishedFunction]:
    """The unfinished functions of one module's text, in file order.

    Args:
        source: the module's text.
        path: the name shown in the result (``faster_rcnn/rpn.py``).

    Raises:
        SyntaxError: ``source`` does not parse.
    """
    tree = ast.parse(source, filename=path)
    found: list[UnfinishedFunction] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                raises = _own_raises(child)
                if raises:
                    is_stub = any(
                        isinstance(r.exc, ast.Call)
                        and any(
                            isinstance(arg, ast.Constant) and str(arg.value).endswith(STUB_MESSAGE_SUFFIX)
                            for arg in r.exc.args
                        )
                        for r in raises
                    )
                    lines = tuple(r.lineno for r in raises)
                    found.append(UnfinishedFunction(path, f"{prefix}{child.name}", lines, is_stub))
                visit(child, f"{prefix}{child.name}.")

    visit(tree, "")
    return sorted(found, key=lambda f: f.lines[0])


def find_unfinished(folder: str | Path) -> list[UnfinishedFunction]:
    """Every function of ``folder/faster_rcnn/<module>.py`` that still raises ``NotImplementedError``.

    Missing modules and modules that do not parse are skipped here: the submission
    check (:func:`rcnn_kit.handin.find_submission_problems`) reports those.

    Args:
        folder: the student's folder holding ``faster_rcnn/``.

    Returns:
        The unfinished functions, module by module in :data:`rcnn_kit.course.STUDENT_MODULES` order.

    Raises:
        FileNotFoundError: ``folder`` is not a directory.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"folder: {root} is not a directory")
    found: list[UnfinishedFunction] = []
    for module in STUDENT_MODULES:
        path = root / PACKAGE_NAME / f"{module}.py"
        if not path.is_file():
            continue
        try:
            found += unfinished_in_source(path.read_text(encoding="utf-8"), f"{PACKAGE_NAME}/{module}.py")
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue  # reported by find_submission_problems, with file and line
    return found


def format_unfinished(unfinished: list[UnfinishedFunction]) -> str:
    """A listing for the student: a heading and one indented line per function."""
    lines = [f"{len(unfinished)} function(s) still raise NotImplementedError (TODO blocks not done):"]
    lines += [f"  - {item.describe()}" for item in unfinished]
    return "\n".join(lines)
