"""Hidden checks of ``anchors.get_fpn_location_coords`` (rubric id ``location_coords``) and
``anchors.generate_fpn_anchors`` (rubric id ``anchors``).

The anchor checks feed the reference's location coordinates, so a bug in the coordinates
costs points only in ``location_coords``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
import torch
from torch import Tensor

from autograder.sandboxed import probes
from autograder.compare import Fail, assert_close, assert_on_device, split_levels
from autograder.feedback import ANCHOR_SIGNATURES, COORDS_SIGNATURES
from autograder.sandbox import SandboxClient

#: Coordinates and anchors are exact multiples of halves of the stride: float32 rounding only.
COORDS_TOL = 1e-6
ANCHORS_TOL = 1e-6

STRIDES = {"p3": 8, "p4": 16, "p5": 32}

#: Feature shapes (B, C, H, W) per case: square, non-square, 1-pixel wide maps.
SHAPES: dict[str, dict[str, list[int]]] = {
    "square_224": {"p3": [2, 8, 28, 28], "p4": [2, 8, 14, 14], "p5": [2, 8, 7, 7]},
    "non_square": {"p3": [1, 4, 5, 9], "p4": [1, 4, 3, 5], "p5": [1, 4, 2, 3]},
    "single_row_and_column": {"p3": [1, 4, 1, 6], "p4": [1, 4, 4, 1], "p5": [1, 4, 1, 1]},
}

COORD_CASES: dict[str, dict[str, Any]] = {
    **{name: {"shapes": shapes, "dtype": "float32"} for name, shapes in SHAPES.items()},
    "float64": {"shapes": SHAPES["non_square"], "dtype": "float64"},
    "one_level_stride_4": {"shapes": {"p2": [1, 4, 6, 4]}, "dtype": "float32", "strides": {"p2": 4}},
}


#: The kind of input of the unusual cases, in words the student sees when such a case fails.
COORD_CASE_WORDS = {
    "non_square": "non-square feature maps", "single_row_and_column": "feature maps one cell high or wide",
    "float64": "dtype=torch.float64", "one_level_stride_4": "a single level with stride 4",
}


def _coords_params(case: dict[str, Any]) -> dict[str, Any]:
    return {
        "module": "anchors",
        "function": "get_fpn_location_coords",
        "kwargs": {
            "shape_per_fpn_level": case["shapes"],
            "strides_per_fpn_level": case.get("strides", STRIDES),
            "dtype": case["dtype"],
            "device": "auto",
        },
    }


@pytest.mark.rubric("location_coords")
@pytest.mark.parametrize("case", list(COORD_CASES))
def test_location_coords_match_reference(case: str, student: SandboxClient, ref: ModuleType) -> None:
    spec = COORD_CASES[case]
    out = student.call("call_function", {}, **_coords_params(spec))
    expected = split_levels(probes.call_function(ref, {}, **_coords_params(spec), device="cpu"), "out")
    actual = split_levels(out, "out")
    what = "get_fpn_location_coords"
    if set(actual) != set(expected):
        raise Fail(f"{what}: returned levels {sorted(actual)}, expected one entry per input level {sorted(expected)}.")
    assert_on_device(out, what)
    strides = spec.get("strides", STRIDES)
    for level, exp in expected.items():
        _, _, height, width = spec["shapes"][level]
        hint_inputs = {name: torch.tensor(value) for name, value in
                       (("stride", float(strides[level])), ("height", height), ("width", width))}
        assert_close(
            actual[level], exp, tol=COORDS_TOL, what=f"{what}(...)[{level!r}]", inputs=hint_inputs,
            hints=COORDS_SIGNATURES, columns=("x", "y"), case=COORD_CASE_WORDS.get(case),
            advice="row (y * W + x) holds ((x + 0.5) * stride, (y + 0.5) * stride) in the requested dtype",
        )


ANCHOR_CASES: dict[str, dict[str, Any]] = {
    "square_224_scale8": {"shapes": SHAPES["square_224"], "stride_scale": 8, "ratios": [0.5, 1.0, 2.0]},
    "non_square_scale4": {"shapes": SHAPES["non_square"], "stride_scale": 4, "ratios": [0.5, 1.0, 2.0]},
    "single_ratio": {"shapes": SHAPES["non_square"], "stride_scale": 8, "ratios": [1.0]},
    "other_ratios": {"shapes": SHAPES["single_row_and_column"], "stride_scale": 2, "ratios": [0.25, 1.0, 3.0, 0.5]},
    "float64": {"shapes": SHAPES["non_square"], "stride_scale": 8, "ratios": [0.5, 1.0, 2.0], "dtype": torch.float64},
}


def _anchor_inputs(ref: Any, spec: dict[str, Any]) -> dict[str, Tensor]:
    locations = ref.anchors.get_fpn_location_coords(spec["shapes"], STRIDES, dtype=spec.get("dtype", torch.float32))
    return {f"locations.{level}": coords for level, coords in locations.items()}


def _anchor_params(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "module": "anchors",
        "function": "generate_fpn_anchors",
        "dict_args": {"locations_per_fpn_level": "locations"},
        "kwargs": {"strides_per_fpn_level": STRIDES, "stride_scale": spec["stride_scale"], "aspect_ratios": spec["ratios"]},
    }


@pytest.mark.rubric("anchors")
@pytest.mark.parametrize("case", list(ANCHOR_CASES))
def test_anchors_match_reference(case: str, student: SandboxClient, ref: ModuleType) -> None:
    spec = ANCHOR_CASES[case]
    inputs = _anchor_inputs(ref, spec)
    out = student.call("call_function", inputs, **_anchor_params(spec))
    expected = split_levels(probes.call_function(ref, inputs, **_anchor_params(spec), device="cpu"), "out")
    actual = split_levels(out, "out")
    what = "generate_fpn_anchors"
    if set(actual) != set(expected):
        raise Fail(f"{what}: returned levels {sorted(actual)}, expected one entry per input level {sorted(expected)}.")
    assert_on_device(out, what)
    hint_inputs = {"num_ratios": torch.tensor(len(spec["ratios"]))}
    for level, exp in expected.items():
        assert_close(
            actual[level], exp, tol=ANCHORS_TOL, what=f"{what}(...)[{level!r}]", inputs=hint_inputs,
            hints=ANCHOR_SIGNATURES, columns=("x1", "y1", "x2", "y2"), explain_inputs=inputs,
            advice="area (stride_scale * stride) ** 2, width sqrt(area / ratio), height area / width, location-major",
        )
