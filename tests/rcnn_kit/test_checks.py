"""The notebook's sanity-check helpers in :mod:`rcnn_kit.checks`."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rcnn_kit.checks import check, rel_error, require_all


def test_rel_error_follows_the_course_formula() -> None:
    x = torch.tensor([[1.0, -2.0], [3.0, 4.0]])
    y = torch.tensor([[1.0, -2.5], [3.0, 4.0]])
    # max|x - y| = 0.5, max|x| = 4, max|y| = 4
    assert rel_error(x, y) == pytest.approx(0.5 / 8)
    assert rel_error(x, x) == 0.0
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0
    assert rel_error(2.0, 1.0) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match=r"shapes differ, x \(2, 2\) vs y \(4,\)"):
        rel_error(x, y.reshape(-1))


def test_check_prints_pass_or_fail_with_hint(capsys: pytest.CaptureFixture[str]) -> None:
    expected = torch.tensor([10.0, 20.0])
    assert check("close", expected + 1e-6, expected, tol=1e-6) is True
    assert capsys.readouterr().out.startswith("PASS  close: relative error")

    assert check("off", torch.tensor([10.0, 25.0]), expected, hint="look at the width") is False
    out = capsys.readouterr().out
    assert out.startswith("FAIL  off: relative error 1.11e-01") and "hint: look at the width" in out

    assert check("shape", torch.zeros(3), expected, hint="one row per box") is False
    out = capsys.readouterr().out
    assert "FAIL  shape: shape (3,), expected (2,)" in out and "one row per box" in out

    assert check("nan", torch.tensor([math.nan, 1.0]), expected) is False
    assert "NaN or inf" in capsys.readouterr().out


def test_check_rejects_values_that_are_not_numbers() -> None:
    with pytest.raises(TypeError, match="actual"):
        check("bad", {"a": 1}, [1.0])


def test_require_all_raises_naming_the_section(capsys: pytest.CaptureFixture[str]) -> None:
    require_all("IoU", [True, True])
    assert "All 2 IoU checks passed." in capsys.readouterr().out
    with pytest.raises(AssertionError, match="IoU: 1 of 3 checks FAILED"):
        require_all("IoU", [True, False, True])
