"""Marker edge cases for :func:`release_tool.markers.stub_source`.

Each test writes a small reference module, stubs it, and checks the stub by
running it (a stubbed function must raise ``NotImplementedError`` naming itself
and the file) and by looking at its exact text where layout matters.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from release_tool.markers import MarkerError, stub_source

FILENAME = "faster_rcnn/example.py"


def _run(source: str) -> dict[str, Any]:
    """Execute module text in a fresh namespace (the stub must import cleanly)."""
    namespace: dict[str, Any] = {"__name__": "stub_under_test"}
    exec(compile(source, FILENAME, "exec"), namespace)
    return namespace


def _src(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def test_function_region_becomes_raise_and_keeps_instructions() -> None:
    ref = _src(
        """
        def area(w, h):
            \"\"\"Area of a w x h box.\"\"\"
            # Multiply the width by the height.
            ### BEGIN SOLUTION
            result = w * h
            return result
            ### END SOLUTION
        """
    )
    stub = stub_source(ref, FILENAME)
    assert "# Multiply the width by the height." in stub
    assert '"""Area of a w x h box."""' in stub
    assert "result = w * h" not in stub and "BEGIN SOLUTION" not in stub and "END SOLUTION" not in stub
    assert _run(ref)["area"](2, 3) == 6
    with pytest.raises(NotImplementedError, match=r"area in faster_rcnn/example\.py"):
        _run(stub)["area"](2, 3)


def test_region_inside_loop_keeps_its_indentation() -> None:
    ref = _src(
        """
        def total(xs):
            acc = 0
            for x in xs:
                # add x
                ### BEGIN SOLUTION
                acc += x
                ### END SOLUTION
            return acc
        """
    )
    stub = stub_source(ref, FILENAME)
    raise_lines = [line for line in stub.splitlines() if "raise NotImplementedError" in line]
    assert len(raise_lines) == 1 and raise_lines[0].startswith(" " * 8 + "raise")
    assert _run(stub)["total"]([]) == 0  # the loop body is never reached
    with pytest.raises(NotImplementedError, match="total in"):
        _run(stub)["total"]([1])


@pytest.mark.parametrize("decorator", ["@staticmethod", "@functools.lru_cache(maxsize=None)"])
def test_method_with_decorator_is_named_by_class(decorator: str) -> None:
    ref = _src(
        f"""
        import functools

        class Head:
            scale = 2

            {decorator}
            def double(x):
                # Multiply by two.
                ### BEGIN SOLUTION
                return 2 * x
                ### END SOLUTION
        """
    )
    stub = stub_source(ref, FILENAME)
    ns = _run(stub)
    with pytest.raises(NotImplementedError, match=r"Head\.double in faster_rcnn/example\.py"):
        ns["Head"].double(3)
    assert ns["Head"].scale == 2


def test_nested_function_and_property() -> None:
    ref = _src(
        """
        class Box:
            def __init__(self, w):
                self.w = w

            @property
            def side(self):
                def helper(v):
                    ### BEGIN SOLUTION
                    return v
                    ### END SOLUTION
                return helper(self.w)
        """
    )
    stub = stub_source(ref, FILENAME)
    with pytest.raises(NotImplementedError, match=r"Box\.side\.helper in"):
        _run(stub)["Box"](3).side


def test_module_and_class_level_regions_become_pass_so_the_stub_imports() -> None:
    ref = _src(
        """
        LIMIT = 4
        # A module-level helper table.
        ### BEGIN SOLUTION
        TABLE = {1: 2}
        ### END SOLUTION

        class Config:
            ### BEGIN SOLUTION
            secret = 7
            ### END SOLUTION
        """
    )
    stub = stub_source(ref, FILENAME)
    ns = _run(stub)  # must not raise
    assert ns["LIMIT"] == 4 and "TABLE" not in ns and not hasattr(ns["Config"], "secret")
    assert "NotImplementedError" not in stub
    assert stub.count("\npass\n") == 1 and stub.count("    pass\n") == 1


def test_hidden_regions_are_dropped_entirely() -> None:
    ref = _src(
        """
        def f(x):
            ### BEGIN HIDDEN
            assert x >= 0, "grader-only check"
            ### END HIDDEN
            return x

        ### BEGIN HIDDEN
        _GRADER_SEED = 1234
        ### END HIDDEN
        """
    )
    stub = stub_source(ref, FILENAME)
    assert "HIDDEN" not in stub and "grader-only" not in stub and "_GRADER_SEED" not in stub
    assert "TODO" not in stub
    assert _run(stub)["f"](-1) == -1


def test_region_at_end_of_file_without_trailing_newline() -> None:
    ref = "def f():\n    # return one\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION"
    stub = stub_source(ref, FILENAME)
    assert "return 1" not in stub and stub.rstrip("\n").endswith("TODO not implemented yet')")
    with pytest.raises(NotImplementedError, match="f in"):
        _run(stub)["f"]()


def test_crlf_line_endings_are_kept() -> None:
    ref = _src(
        """
        def f(x):
            # double it
            ### BEGIN SOLUTION
            return 2 * x
            ### END SOLUTION


        def g(x):
            return x
        """
    ).replace("\n", "\r\n")
    stub = stub_source(ref, FILENAME)
    assert "\r\n" in stub
    assert stub.count("\n") == stub.count("\r\n"), "every line must keep its CRLF ending"
    assert "return 2 * x" not in stub
    with pytest.raises(NotImplementedError):
        _run(stub.replace("\r\n", "\n"))["f"](1)


def test_tab_indentation_is_kept() -> None:
    ref = (
        "def f(x):\n\tif x:\n\t\t# be positive\n"
        "\t\t### BEGIN SOLUTION\n\t\treturn 1\n\t\t### END SOLUTION\n\treturn 0\n"
    )
    stub = stub_source(ref, FILENAME)
    assert "\n\t\traise NotImplementedError(" in stub and "\n\t\t# be positive\n" in stub
    assert "    " not in stub, "no spaces may be introduced into a tab-indented file"
    ns = _run(stub)
    assert ns["f"](0) == 0
    with pytest.raises(NotImplementedError):
        ns["f"](1)


def test_file_without_markers_is_returned_unchanged() -> None:
    ref = "def f():\n    return 1\r\n"
    assert stub_source(ref, FILENAME) == ref


@pytest.mark.parametrize(
    ("ref", "line", "words"),
    [
        ("def f():\n    ### BEGIN SOLUTION\n    ### BEGIN SOLUTION\n    ### END SOLUTION\n", 3, "nested"),
        ("def f():\n    ### BEGIN SOLUTION\n    ### BEGIN HIDDEN\n    ### END HIDDEN\n", 3, "nested"),
        ("def f():\n    ### BEGIN SOLUTION\n    return 1\n", 2, "never closed"),
        ("def f():\n    return 1\n    ### END SOLUTION\n", 3, "without a matching"),
        ("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END HIDDEN\n", 4, "expected '### END SOLUTION'"),
        ("def f():\n    ### BEGIN SOLUTION\n    return 1\n### END SOLUTION\n", 4, "indented"),
        ("def f():\n    ## BEGIN SOLUTION\n    return 1\n", 2, "malformed"),
        ("def f():\n    ### BEGIN SOLUTION: the loop\n    return 1\n    ### END SOLUTION\n", 2, "malformed"),
        ("def f(:\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n", 1, "does not parse"),
    ],
    ids=["nested", "nested-kinds", "unclosed", "unopened", "mismatched", "indent", "typo", "trailing-text", "syntax"],
)
def test_bad_markers_raise_naming_file_and_line(ref: str, line: int, words: str) -> None:
    with pytest.raises(MarkerError, match=rf"^faster_rcnn/example\.py:{line}: .*{words}"):
        stub_source(ref, FILENAME)


def test_region_splitting_a_statement_is_rejected() -> None:
    ref = "x = [\n    1,\n### BEGIN SOLUTION\n    2,\n### END SOLUTION\n]\n"
    with pytest.raises(MarkerError, match="does not parse"):
        stub_source(ref, FILENAME)


def test_marker_error_is_a_value_error() -> None:
    assert issubclass(MarkerError, ValueError)


GOLDEN = Path(__file__).parent / "golden"


def test_stub_matches_the_stored_expected_output() -> None:
    """A reviewed reference/stub pair: every placement of markers in one file."""
    reference = (GOLDEN / "reference_boxes.py").read_text(encoding="utf-8")
    expected = (GOLDEN / "expected_stub_boxes.py").read_text(encoding="utf-8")
    assert stub_source(reference, "faster_rcnn/boxes.py") == expected
