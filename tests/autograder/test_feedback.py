"""Tests of autograder/feedback.py (bug signatures, static scan), compare.py and the probes' helpers.

Each signature is tested on the output of its buggy corpus submission (run in process) for
the inputs of a hidden-check case, and must stay silent on the reference's output.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torchvision

from autograder import feedback
from autograder.sandboxed import probes
from autograder.compare import Fail, assert_close, assert_equal_indices, assert_on_device, rel_error
from check_driver import CHECKS_DIR, load_check_module
from corpus_build import REFERENCE_DIR, build_submission, load_entries
from rcnn_kit.impl import import_faster_rcnn, import_module

_names = itertools.count()
CHECKS = {name: load_check_module(CHECKS_DIR / f"test_{name}.py") for name in ("iou", "nms", "anchors", "deltas")}
BUGGY = {entry.name: entry for entry in load_entries("buggy")}


def buggy_module(entry_name: str, module: str, tmp_path: Path) -> ModuleType:
    """The ``module`` of a buggy corpus submission, imported in process."""
    folder = build_submission(BUGGY[entry_name], tmp_path / entry_name)
    pkg = import_faster_rcnn(folder, name=f"feedback_test_pkg_{next(_names)}")
    return import_module(pkg, module)


def iou_inputs() -> dict[str, torch.Tensor]:
    return CHECKS["iou"].CASES["random_large"]()


def run_iou(mod: ModuleType, inputs: dict) -> torch.Tensor:
    return mod.iou(inputs["boxes1"], inputs["boxes2"])


def nms_inputs(case: str) -> Callable[[], dict[str, torch.Tensor]]:
    return CHECKS["nms"].CASES[case]


def run_nms(mod: ModuleType, inputs: dict) -> torch.Tensor:
    return mod.nms(inputs["boxes"], inputs["scores"], float(inputs["iou_threshold"]))


def coords_inputs() -> dict[str, torch.Tensor]:
    return {"stride": torch.tensor(16.0)}


def run_coords(mod: ModuleType, inputs: dict) -> torch.Tensor:
    return mod.get_fpn_location_coords({"p4": (1, 4, 3, 5)}, {"p4": 16})["p4"]


def anchors_inputs() -> dict[str, torch.Tensor]:
    return {}


def run_anchors(mod: ModuleType, inputs: dict, ref: ModuleType | None = None) -> torch.Tensor:
    locations = {"p4": (torch.tensor([[8.0, 8.0], [24.0, 8.0], [8.0, 24.0], [24.0, 24.0]]))}
    return mod.generate_fpn_anchors(locations, {"p4": 16}, 4, [0.5, 1.0, 2.0])["p4"]


def deltas_get_inputs() -> dict[str, torch.Tensor]:
    return CHECKS["deltas"].GET_CASES["mixed_rows"]()


def run_deltas_get(mod: ModuleType, inputs: dict) -> torch.Tensor:
    return mod.rcnn_get_deltas_from_anchors(inputs["anchors"], inputs["gt_boxes"])


def deltas_apply_inputs() -> dict[str, torch.Tensor]:
    return CHECKS["deltas"].APPLY_CASES["clamped_dw_dh"]()


def run_deltas_apply(mod: ModuleType, inputs: dict) -> torch.Tensor:
    return mod.rcnn_apply_deltas_to_anchors(inputs["deltas"].clone(), inputs["anchors"])


def foreground_only(inputs: dict[str, torch.Tensor], expected: torch.Tensor) -> dict[str, torch.Tensor]:
    keep = ~(expected == feedback.IGNORED_DELTA).all(dim=1)
    return {"anchors": inputs["anchors"][keep], "gt_boxes": inputs["gt_boxes"][keep]}


#: (signature, buggy corpus entry, module, input maker, runner, hint substring)
SIGNATURE_CASES = [
    (feedback.iou_out_of_range, "iou_no_clamp", "iou", iou_inputs, run_iou, "clamp"),
    (feedback.iou_plus_one, "iou_plus_one", "iou", iou_inputs, run_iou, "+ 1"),
    (feedback.iou_union_keeps_intersection, "iou_union_keeps_intersection", "iou", iou_inputs, run_iou, "subtract"),
    (feedback.nms_threshold_boundary, "nms_suppresses_at_threshold", "nms", nms_inputs("iou_exactly_at_threshold"), run_nms, "strictly"),
    (feedback.nms_sorted_positions, "nms_sorted_positions", "nms", nms_inputs("clustered_t0.5"), run_nms, "sorted order"),
    (feedback.nms_ignores_scores, "nms_ignores_scores", "nms", nms_inputs("clustered_t0.5"), run_nms, "decreasing score"),
    (feedback.nms_unordered, "nms_kept_in_index_order", "nms", nms_inputs("clustered_t0.5"), run_nms, "decreasing order"),
    (feedback.coords_xy_swapped, "coords_xy_swapped", "anchors", coords_inputs, run_coords, "swapped"),
    (feedback.coords_not_centred, "coords_without_half_cell", "anchors", coords_inputs, run_coords, "centres"),
    (feedback.coords_order, "coords_column_major", "anchors", coords_inputs, run_coords, "x varies fastest"),
    (feedback.anchors_wh_swapped, "anchors_width_height_swapped", "anchors", anchors_inputs, run_anchors, "swapped"),
    (feedback.anchors_order, "anchors_ratio_major", "anchors", anchors_inputs, run_anchors, "location-major"),
    (feedback.anchors_wrong_size, "anchors_area_ignores_stride", "anchors", anchors_inputs, run_anchors, "stride_scale"),
    (feedback.deltas_from_corners, "deltas_from_corners", "deltas", deltas_get_inputs, run_deltas_get, "centres"),
    (feedback.deltas_log_inverted, "deltas_log_inverted", "deltas", deltas_get_inputs, run_deltas_get, "inverse"),
    (feedback.deltas_ignored_rows, "deltas_neutral_rows_kept", "deltas", deltas_get_inputs, run_deltas_get, "neutral"),
    (feedback.deltas_ignored_rows, "deltas_background_rows_kept", "deltas", deltas_get_inputs, run_deltas_get, "background"),
    (feedback.deltas_apply_no_clamp, "apply_deltas_without_clamp", "deltas", deltas_apply_inputs, run_deltas_apply, "clamp"),
    (feedback.deltas_apply_corners, "apply_deltas_moves_corners", "deltas", deltas_apply_inputs, run_deltas_apply, "corners"),
]


@pytest.mark.parametrize(
    "signature, entry, module, make_inputs, run, needle", SIGNATURE_CASES, ids=[f"{c[0].__name__}-{c[1]}" for c in SIGNATURE_CASES]
)
def test_signature_names_the_mistake_of_its_buggy_entry(signature, entry, module, make_inputs, run, needle, tmp_path, ref) -> None:
    inputs = make_inputs()
    expected = run(getattr(ref, module), inputs)
    actual = run(buggy_module(entry, module, tmp_path), inputs)
    if signature in (feedback.deltas_from_corners, feedback.deltas_log_inverted):  # the check passes rows with a target only
        rows = ~(expected == feedback.IGNORED_DELTA).all(dim=1)
        inputs, actual, expected = foreground_only(inputs, expected), actual[rows], expected[rows]
    hint = signature(actual, expected, inputs)
    assert hint is not None and needle in hint
    assert signature(expected, expected, inputs) is None  # silent on a correct answer


def test_signatures_are_silent_on_correct_corpus_outputs(tmp_path: Path, ref) -> None:
    """The correct corpus submissions trigger no hint on any signature's inputs."""
    for entry in load_entries("correct"):
        folder = build_submission(entry, tmp_path / entry.name)
        pkg = import_faster_rcnn(folder, name=f"feedback_test_pkg_{next(_names)}")
        for signature, _, module, make_inputs, run, _ in SIGNATURE_CASES:
            inputs = make_inputs()
            actual, expected = run(import_module(pkg, module), inputs), run(getattr(ref, module), inputs)
            assert actual.shape == expected.shape and rel_error(actual.double(), expected.double()) < 1e-5
            if signature in (feedback.deltas_from_corners, feedback.deltas_log_inverted):
                continue  # these see rows with a target only; covered above
            assert signature(actual, expected, inputs) is None, (entry.name, signature.__name__)


# ----------------------------------------------------------------------------------------
# compare.py
# ----------------------------------------------------------------------------------------


def test_rel_error_matches_the_course_formula() -> None:
    x = torch.tensor([1.0, -2.0, 3.0])
    y = torch.tensor([1.5, -2.0, 2.0])
    assert rel_error(x, y) == pytest.approx(1.0 / (3.0 + 2.0))
    assert rel_error(x, x) == 0.0
    assert rel_error(torch.zeros(3), torch.zeros(3)) == 0.0
    assert rel_error(torch.zeros(0, 4), torch.zeros(0, 4)) == 0.0
    assert rel_error(torch.tensor([float("nan")]), torch.tensor([1.0])) == float("inf")
    with pytest.raises(ValueError, match="shapes differ"):
        rel_error(torch.zeros(2), torch.zeros(3))


def test_assert_close_messages_name_the_problem_without_hidden_values() -> None:
    expected = torch.tensor([[123.456, 7.0]])
    with pytest.raises(Fail, match="shape"):
        assert_close(torch.zeros(2, 2), expected, tol=1e-6, what="f(x)")
    with pytest.raises(Fail, match="dtype torch.float64"):
        assert_close(expected.double(), expected, tol=1e-6, what="f(x)")
    with pytest.raises(Fail, match="NaN or inf"):
        assert_close(torch.tensor([[float("nan"), 7.0]]), expected, tol=1e-6, what="f(x)")
    with pytest.raises(Fail, match="expected a torch.Tensor"):
        assert_close([1, 2], expected, tol=1e-6, what="f(x)")
    with pytest.raises(Fail) as info:
        assert_close(expected + 1, expected, tol=1e-6, what="f(x)", hints=[lambda a, e, i: "look here"])
    message = str(info.value)
    assert "relative error" in message and "Likely mistake: look here" in message
    assert "123" not in message and "124" not in message
    assert_close(expected * (1 + 1e-7), expected, tol=1e-6, what="f(x)")  # within tolerance


def test_assert_equal_indices_does_not_reveal_the_expected_count() -> None:
    with pytest.raises(Fail) as info:
        assert_equal_indices(torch.tensor([0, 1, 2, 3, 4]), torch.tensor([0, 2, 9]), what="nms")
    assert "returned 5 indices" in str(info.value) and "3" not in str(info.value)
    with pytest.raises(Fail, match="int32"):
        assert_equal_indices(torch.tensor([0, 2], dtype=torch.int32), torch.tensor([0, 2]), what="nms")
    assert_equal_indices(torch.tensor([0, 2]), torch.tensor([0, 2]), what="nms")


def test_assert_on_device_reads_the_probe_flag() -> None:
    with pytest.raises(Fail, match="another device"):
        assert_on_device({"meta.device_ok": torch.tensor(0)}, "nms")
    assert_on_device({"meta.device_ok": torch.tensor(1)}, "nms")


# ----------------------------------------------------------------------------------------
# Static scan and tripwires (iou and nms must be the student's own)
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "import torchvision.ops\n",
        "from torchvision.ops import box_iou\n",
        "from torchvision.ops.boxes import nms as n\n",
        "from torchvision import ops\n",
        "import torchvision\ndef iou(a, b):\n    return torchvision.ops.box_iou(a, b)\n",
        "import torchvision as tv\ndef nms(b, s, t):\n    return tv.ops.nms(b, s, t)\n",
    ],
)
def test_static_scan_finds_library_box_ops(source: str) -> None:
    findings = feedback.find_library_box_ops(source, "iou.py")
    assert findings and all(f.startswith("iou.py line ") for f in findings)


def test_static_scan_accepts_the_reference_and_reports_syntax_errors() -> None:
    for module in ("iou", "nms"):
        assert feedback.find_library_box_ops((REFERENCE_DIR / f"{module}.py").read_text(), f"{module}.py") == []
    assert "does not parse" in feedback.find_library_box_ops("def iou(:\n", "iou.py")[0]


def test_tripwires_catch_library_calls_and_restore_everything() -> None:
    originals = (torchvision.ops.box_iou, torchvision.ops.boxes.nms, torch.ops.torchvision.nms)
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11]])
    hits: list[str] = []
    with probes.library_tripwires(hits):
        with pytest.raises(probes.ProbeError, match="write this function yourself"):
            torchvision.ops.box_iou(boxes, boxes)
        with pytest.raises(probes.ProbeError):
            torch.ops.torchvision.nms(boxes, torch.ones(2), 0.5)
    assert hits == ["torchvision.ops.box_iou", "torch.ops.torchvision.nms"]
    assert (torchvision.ops.box_iou, torchvision.ops.boxes.nms, torch.ops.torchvision.nms) == originals


def test_library_names_bound_in_a_module_are_found(tmp_path: Path, ref) -> None:
    assert probes.library_names_in(buggy_module("nms_calls_torchvision", "nms", tmp_path)) == ["tv_nms"]
    assert probes.library_names_in(ref.nms) == [] and probes.library_names_in(ref.iou) == []


# ----------------------------------------------------------------------------------------
# Probe helpers shared with the grader
# ----------------------------------------------------------------------------------------


def matched_rows(n: int, seed: int) -> torch.Tensor:
    """Tensor[n, 5] matched GT rows: a mix of foreground, background (-1) and neutral (-1e8)."""
    g = torch.Generator().manual_seed(seed)
    kind = torch.randint(0, 3, (n,), generator=g)
    rows = torch.rand(n, 5, generator=g) * 100
    rows[kind == 1] = -1.0
    rows[kind == 2] = -1e8
    rows[kind == 0, 4] = torch.randint(0, 5, (int((kind == 0).sum()),), generator=g).float()
    return rows


def test_deterministic_sampler_is_call_order_independent_and_respects_the_contract() -> None:
    rows = matched_rows(200, 1)
    first = probes.deterministic_sampler(rows, 32, 0.25)
    torch.manual_seed(123)
    probes.deterministic_sampler(matched_rows(50, 2), 8, 0.5)  # an unrelated call in between
    second = probes.deterministic_sampler(rows, 32, 0.25, generator=torch.Generator().manual_seed(9))
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    fg, bg = first
    assert fg.numel() == 8 and bg.numel() == 24 and fg.dtype == bg.dtype == torch.int64
    assert bool((rows[fg, 4] >= 0).all()) and bool((rows[bg] == -1).all())
    assert len(set(fg.tolist()) | set(bg.tolist())) == 32
    few_fg = rows.clone()
    few_fg[rows[:, 4] >= 0] = -1.0
    fg, bg = probes.deterministic_sampler(few_fg, 16, 0.5)
    assert fg.numel() == 0 and bg.numel() == 16


def test_load_weights_reports_missing_misshaped_and_extra_parameters() -> None:
    target = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.ReLU(), torch.nn.Conv2d(3, 1, 1))
    source = {k: torch.randn(v.shape) for k, v in target.state_dict().items()}
    probes.load_weights(target, source, "Net")
    assert all(torch.equal(target.state_dict()[k], v) for k, v in source.items())
    with pytest.raises(probes.ProbeError, match="no parameter '3.weight'"):
        probes.load_weights(target, {**source, "2.bias": source["2.bias"], "3.weight": torch.zeros(1)}, "Net")
    with pytest.raises(probes.ProbeError, match=r"'0.weight' has shape \(3, 2, 3, 3\), expected \(3, 2, 5, 5\)"):
        probes.load_weights(target, {**source, "0.weight": torch.zeros(3, 2, 5, 5)}, "Net")
    with pytest.raises(probes.ProbeError, match="does not have: 2.bias"):
        probes.load_weights(target, {k: v for k, v in source.items() if k != "2.bias"}, "Net")
    renamed = torch.nn.Sequential()
    renamed.add_module("conv_a", torch.nn.Conv2d(2, 3, 3))
    renamed.add_module("relu", torch.nn.ReLU())
    renamed.add_module("conv_b", torch.nn.Conv2d(3, 1, 1))
    probes.load_weights(renamed, source, "Net")  # same shapes in the same order: copied by position
    assert torch.equal(renamed.conv_b.weight, source["2.weight"])
