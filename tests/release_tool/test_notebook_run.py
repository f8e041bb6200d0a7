"""The notebook, run headless through a real Jupyter kernel (nbclient), as a student runs it.

- With the generated stubs it must stop at the first TODO with the
  ``NotImplementedError`` naming the function and the file, not with an unrelated traceback.
- With the reference package and ``DATASET = "voc2007"`` it must run top to bottom on a
  tiny VOC-layout dataset written here (real VOC class names, XML annotations, the JSON
  files the data helper writes): the class names come from the dataset, the final
  training, the detection pictures, the mAP table and the submission all work.

(The synthetic default runs top to bottom in test_nbgrader_roundtrip.py, through
``nbgrader autograde``.)
"""

from __future__ import annotations

import ast
import random
import zipfile
from pathlib import Path

import nbformat
import pytest
from nbclient.exceptions import CellExecutionError
from PIL import Image

from data_scripts.voc_json import prepare_voc2007
from rcnn_kit.cli import build_parser
from rcnn_kit.data import VOC_CLASSES
from rcnn_kit.impl import STUDENT_MODULES
from release_tool.notebook import inject_parameters, make_student_notebook, read_source_notebook
from release_tool.release import REFERENCE_DIR, SOURCE_NOTEBOOK, render_release

from nbrun import TINY_PARAMETERS, cell_text, copy_package, execute

pytestmark = pytest.mark.slow

#: The tiny VOC2007-layout dataset: image id -> (width, height, split, objects (name, box, difficult)).
TINY_VOC = {
    "000005": (128, 96, "train", [("dog", (10, 20, 90, 90), False), ("person", (70, 5, 120, 60), False)]),
    "000007": (96, 128, "train", [("car", (5, 40, 80, 110), False), ("chair", (60, 60, 90, 100), True)]),
    "000009": (128, 96, "train", [("person", (30, 10, 70, 90), False)]),
    "000012": (112, 112, "train", [("dog", (20, 20, 100, 100), False), ("car", (0, 0, 40, 30), False)]),
    "000016": (128, 96, "val", [("dog", (15, 10, 100, 85), False)]),
    "000017": (96, 128, "val", [("person", (10, 20, 60, 120), False), ("car", (50, 70, 95, 125), False)]),
}


def _annotation_xml(filename: str, width: int, height: int, objects: list) -> str:
    """A VOC2007 annotation file, written out by hand (independent of the kit's XML writer)."""
    parts = [
        f"<annotation><folder>VOC2007</folder><filename>{filename}</filename>"
        f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"
    ]
    for name, (x1, y1, x2, y2), difficult in objects:
        parts.append(
            f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
            f"<difficult>{int(difficult)}</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
            f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        )
    return "".join(parts) + "</annotation>\n"


def write_tiny_voc(data_root: Path) -> Path:
    """``data_root/VOCdevkit/VOC2007`` with images, XML, image sets and train/val JSON; returns that folder."""
    voc = data_root / "VOCdevkit" / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True)
    rng = random.Random(0)
    splits: dict[str, list[str]] = {"train": [], "val": []}
    for image_id, (width, height, split, objects) in TINY_VOC.items():
        pixels = bytes(rng.randrange(256) for _ in range(width * height * 3))
        Image.frombytes("RGB", (width, height), pixels).save(voc / "JPEGImages" / f"{image_id}.jpg")
        (voc / "Annotations" / f"{image_id}.xml").write_text(
            _annotation_xml(f"{image_id}.jpg", width, height, objects), encoding="utf-8"
        )
        splits[split].append(image_id)
    for split, ids in splits.items():
        (voc / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
    # What `rcnn-kit data voc2007` writes after extracting the tars (counts differ from real VOC).
    prepare_voc2007(voc, check_counts=False)
    return voc


def test_student_notebook_stops_at_the_first_todo(
    repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # one thread: far quicker on a shared, loaded machine
    # Write the student package exactly as the release renders it.
    for rel, data in render_release(repo_root).items():
        if rel.startswith("assignments/faster_rcnn/"):
            path = tmp_path / rel.removeprefix("assignments/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    student_nb = make_student_notebook(read_source_notebook(repo_root / SOURCE_NOTEBOOK), str(SOURCE_NOTEBOOK))
    nb = inject_parameters(student_nb, TINY_PARAMETERS)

    with pytest.raises(CellExecutionError) as excinfo:
        execute(nb, tmp_path)

    assert excinfo.value.ename == "NotImplementedError"
    assert "get_fpn_location_coords in faster_rcnn/anchors.py" in excinfo.value.evalue
    failed = [c for c in nb.cells if any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert [c.id for c in failed] == ["check_anchors"], "the first student code runs in the anchors check"
    executed = [c for c in nb.cells if c.cell_type == "code" and c.get("execution_count")]
    assert executed[-1].id == "check_anchors", "no cell after the failing one may run"


def test_notebook_runs_on_a_voc_layout_dataset(repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    data_root = tmp_path / "data"
    write_tiny_voc(data_root)
    copy_package(repo_root / REFERENCE_DIR, tmp_path)
    source_nb = read_source_notebook(repo_root / SOURCE_NOTEBOOK)
    nb = inject_parameters(source_nb, {**TINY_PARAMETERS, "DATASET": "voc2007", "DATA_ROOT": str(data_root)})
    nbformat.write(nb, tmp_path / "faster_rcnn.ipynb")  # the saved notebook, as in the student's folder

    execute(nb, tmp_path)

    outputs = {cell.id: cell_text(cell) for cell in nb.cells if cell.cell_type == "code"}
    assert "voc2007: 4 training and 2 validation images" in outputs["data"]
    assert f"{len(VOC_CLASSES)} classes: {', '.join(VOC_CLASSES)}" in outputs["data"], "names read from the dataset"
    assert "dog at [" in outputs["anchor_picture"] and "person at [" in outputs["anchor_picture"]
    assert "2 steps of 2 images" in outputs["train"]
    table = outputs["map"]
    assert "voc2007 validation:" in table and "over 2 images" in table
    rows = {line.split()[0] for line in table.splitlines() if line.strip()}
    assert {"dog", "person", "car", "chair"} <= rows and "matched recall@0.5" in table
    images = [o for c in nb.cells if c.id == "map" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2, "one detection picture per validation image (NUM_PICTURES = 2)"
    with zipfile.ZipFile(tmp_path / "submission.zip") as archive:
        expected = [f"faster_rcnn/{m}.py" for m in STUDENT_MODULES] + ["faster_rcnn.ipynb"]
        assert sorted(archive.namelist()) == sorted(expected)


def test_the_notebooks_voc_command_is_accepted_by_the_data_cli(repo_root: Path, tmp_path: Path) -> None:
    data_cell = next(c.source for c in read_source_notebook(repo_root / SOURCE_NOTEBOOK).cells if c.id == "data")
    line = next(line.strip() for line in data_cell.splitlines() if line.strip().startswith("arguments = ["))
    expression = ast.parse(line.split("=", 1)[1].strip(), mode="eval")
    tars, data_root = tmp_path / "drive" / "voc_tars", tmp_path / "content" / "data"
    arguments = eval(compile(expression, "data cell", "eval"), {"str": str, "tars": tars, "data_root": data_root})

    args = build_parser().parse_args(["data", *arguments])  # `rcnn-kit data voc2007 ...`, as documented
    assert args.data_command == "voc2007"
    assert Path(args.download_dir) == tars and Path(args.data_dir) == data_root
    assert not args.skip_download and not args.no_count_check, "the real VOC counts are checked"
