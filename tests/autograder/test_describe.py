"""autograder/describe.py: property-level explanations when no known mistake matches."""

from __future__ import annotations

import pytest
import torch

from autograder.compare import Fail, assert_close
from autograder.describe import dtype_advice, nonfinite_rows, shape_difference, value_difference

#: A distinctive expected tensor: none of its values may ever appear in a message.
EXPECTED = torch.tensor([[123.456, 7.25, 31.5, 44.75], [12.5, 61.125, 83.0, 97.875], [5.5, 6.5, 17.0, 29.0]])


@pytest.mark.parametrize(
    "actual, expected, phrase",
    [
        ((2, 5, 1), (2, 5), "extra trailing dimension of size 1"),
        ((2, 5), (2, 5, 1), "trailing dimension of size 1 is missing"),
        ((5, 2), (2, 5), "another order"),
        ((2, 6), (2, 5), "dimension 1 has the wrong size"),
        ((2, 5, 4), (10,), "3 dimensions instead of 1"),
    ],
)
def test_shape_difference_names_the_dimension_problem(actual, expected, phrase) -> None:
    assert phrase in shape_difference(actual, expected)


def test_dtype_advice() -> None:
    assert "float64 in, float64 out" in dtype_advice(torch.float32, torch.float64)
    assert "int64" in dtype_advice(torch.int32, torch.int64)
    assert "integers" in dtype_advice(torch.float32, torch.int64)
    assert dtype_advice(torch.bool, torch.float32) is None


@pytest.mark.parametrize(
    "actual, phrase",
    [
        (EXPECTED * 3, "same factor"),
        (EXPECTED + 2.5, "same amount"),
        (-EXPECTED, "wrong sign"),
        (EXPECTED.flatten().flip(0).reshape(3, 4), "another order"),
    ],
)
def test_value_difference_recognises_global_patterns(actual, phrase) -> None:
    text = value_difference(actual, EXPECTED, tol=1e-5)
    assert phrase in text
    assert not any(f"{v:g}" in text for v in EXPECTED.flatten().tolist() if v >= 10)


def test_value_difference_names_rows_columns_and_row_kinds() -> None:
    actual = EXPECTED.clone()
    actual[1, 2:] += 5.0  # one row, columns 2 and 3
    text = value_difference(actual, EXPECTED, tol=1e-5, columns=("dx", "dy", "dw", "dh"),
                            row_groups={"foreground": torch.tensor([True, False, True]),
                                        "background": torch.tensor([False, True, False])})
    assert "1 of 3 rows differ" in text and "only background rows are wrong" in text and "columns dw, dh" in text


def test_value_difference_of_a_scalar_says_the_direction_only() -> None:
    assert value_difference(torch.tensor(2.0), torch.tensor(1.0), tol=1e-5) == "the value is too large"
    assert value_difference(torch.tensor(0.0), torch.tensor(1.0), tol=1e-5) == "the value is 0"
    assert value_difference(torch.tensor(-1.0), torch.tensor(1.0), tol=1e-5) == "the value has the wrong sign"


def test_nonfinite_rows_counts_rows() -> None:
    actual = torch.zeros(4, 3)
    actual[2, 1] = float("nan")
    assert nonfinite_rows(actual) == "in 1 of 4 rows"


def test_assert_close_without_a_hint_says_the_property_and_the_advice_and_keeps_the_details() -> None:
    actual = EXPECTED.clone()
    actual[:, 0] += 1.0
    with pytest.raises(Fail) as info:
        assert_close(actual, EXPECTED, tol=1e-6, what="f(x)", columns=("x1", "y1", "x2", "y2"),
                     case="degenerate boxes", advice="read the docstring", explain_inputs={"x": torch.ones(2)})
    message = str(info.value)
    assert "on degenerate boxes" in message and "only column x1 is wrong" in message
    assert "Check: read the docstring" in message
    assert "123" not in message
    details = info.value.details
    assert details is not None and details.what == "f(x)" and torch.equal(details.expected, EXPECTED)
    assert torch.equal(details.actual, actual) and set(details.inputs) == {"x"}


def test_assert_close_tries_shape_hints_on_a_shape_mismatch() -> None:
    with pytest.raises(Fail) as info:
        assert_close(torch.zeros(3, 4, 1), EXPECTED, tol=1e-6, what="f(x)", shape_hints=[lambda a, e, i: "drop it"])
    assert "output shape (3, 4, 1), expected (3, 4). Likely mistake: drop it." in str(info.value)
