"""The one "broken on purpose" format (autograder/variants.py), shared by the corpus and the calibration."""

from __future__ import annotations

from pathlib import Path

import pytest

from autograder.variants import CALIBRATION_VARIANTS_DIR, apply_edit, build_variant, calibration_variants, read_variant
from rcnn_kit.course import REFERENCE_DIR, STUDENT_MODULES
from rcnn_kit.impl import import_all

REFERENCE = Path(__file__).resolve().parents[2] / REFERENCE_DIR
TEXT = "def f(x):\n    # keep\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION\n"


def test_every_calibration_variant_applies_to_the_reference_and_imports(tmp_path: Path) -> None:
    variants = calibration_variants()
    assert len(variants) >= 7 and [v.name for v in variants] == sorted(v.name for v in variants)
    for variant in variants:
        folder = build_variant(REFERENCE, tmp_path / variant.name, variant.edits, where=variant.name)
        changed = [m for m in STUDENT_MODULES if (folder / f"{m}.py").read_text() != (REFERENCE / f"{m}.py").read_text()]
        assert changed == sorted({Path(e["file"]).stem for e in variant.edits}, key=STUDENT_MODULES.index), variant.name
        pkg = import_all(folder, name=f"variant_{variant.name}")
        assert pkg.detector.FasterRCNN is not None


def test_calibration_variants_by_name_and_unknown_names() -> None:
    assert [v.name for v in calibration_variants(["rpn_loss_zero", "empty_inference"])] == ["rpn_loss_zero", "empty_inference"]
    with pytest.raises(ValueError, match="unknown \\['nope'\\]"):
        calibration_variants(["nope"])


def test_old_text_must_occur_exactly_once() -> None:
    assert apply_edit(TEXT, {"file": "iou.py", "old": "x + 1", "new": "x - 1"}, "t") == TEXT.replace("x + 1", "x - 1")
    with pytest.raises(ValueError, match="occurs 0 times"):
        apply_edit(TEXT, {"file": "iou.py", "old": "x * 2", "new": ""}, "t")
    with pytest.raises(ValueError, match="occurs 2 times"):
        apply_edit(TEXT + TEXT, {"file": "iou.py", "old": "x + 1", "new": ""}, "t")


def test_block_edit_replaces_the_solution_body_at_its_indentation() -> None:
    out = apply_edit(TEXT, {"file": "iou.py", "block": 0, "new": "y = x\nreturn y\n"}, "t")
    assert out == "def f(x):\n    # keep\n    ### BEGIN SOLUTION\n    y = x\n    return y\n    ### END SOLUTION\n"
    with pytest.raises(ValueError, match="block 1 does not exist"):
        apply_edit(TEXT, {"file": "iou.py", "block": 1, "new": ""}, "t")


@pytest.mark.parametrize(
    "edit",
    [{"file": "iou.py", "new": "x"}, {"file": "iou.py", "old": "a", "block": 0, "new": "x"},
     {"file": "setup.py", "old": "a", "new": "b"}, {"file": "iou.py", "old": "a", "new": "b", "colour": 1}],
)
def test_malformed_edits_are_refused(edit: dict) -> None:
    with pytest.raises(ValueError, match="t: "):
        apply_edit(TEXT, edit, "t")


def test_read_variant_refuses_unknown_keys_and_keeps_the_reader_s(tmp_path: Path) -> None:
    path = tmp_path / "v.toml"
    path.write_text('description = "d"\nlose = ["iou"]\n[[edit]]\nfile = "iou.py"\nold = "a"\nnew = "b"\n')
    with pytest.raises(ValueError, match="unknown keys \\['lose'\\]"):
        read_variant(path)
    variant = read_variant(path, extra_keys=("lose",))
    assert (variant.name, variant.description, variant.extra, len(variant.edits)) == ("v", "d", {"lose": ["iou"]}, 1)
    assert CALIBRATION_VARIANTS_DIR.is_dir()
