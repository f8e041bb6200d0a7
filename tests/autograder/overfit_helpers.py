"""Helpers of the overfit tests: a VOC-layout overfit subset made here, and grading the overfit check for real.

Imported by test_overfit_grading.py, test_overfit_data.py and test_calibration.py (pytest puts
this folder on the path, as for corpus_build.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from data_scripts.cli import main as data_main
from rcnn_kit.data.voc import ANNOTATIONS_DIR, IMAGES_DIR, VocAnnotation, VocObject, write_voc_xml

REPO_ROOT = Path(__file__).resolve().parents[2]
#: (VOC class name, box x1, y1, x2, y2) per image of :func:`write_voc_subset`'s source, in a 96 x 80 frame.
VOC_OBJECTS: tuple[tuple[tuple[str, tuple[int, int, int, int]], ...], ...] = (
    (("cat", (20, 10, 76, 70)),),
    (("dog", (14, 12, 70, 74)), ("person", (62, 20, 94, 78))),
    (("person", (24, 4, 80, 72)),),
)
SOURCE_SIZE = (96, 80)  # width, height


def write_voc_subset(root: Path, image_size: int = 64) -> Path:
    """A tiny VOC2012-style folder (XML annotations, real VOC class names) turned into an overfit subset.

    Goes through the instructor's commands: ``rcnn-kit data voc2012 --root`` (train.json) and
    ``rcnn-kit data overfit-subset`` (resized images, manifest). Returns the subset folder.
    """
    source = root / "VOC"
    (source / ANNOTATIONS_DIR).mkdir(parents=True)
    (source / IMAGES_DIR).mkdir()
    rng = np.random.default_rng(0)
    for index, objects in enumerate(VOC_OBJECTS):
        pixels = rng.integers(60, 160, size=(SOURCE_SIZE[1], SOURCE_SIZE[0], 3), dtype=np.uint8)
        image = Image.fromarray(pixels)
        draw = ImageDraw.Draw(image)
        for number, (_, box) in enumerate(objects):
            draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=((230, 30, 30), (30, 30, 230))[number % 2])
        name = f"2008_{index:06d}"
        image.save(source / IMAGES_DIR / f"{name}.jpg", quality=95)
        annotation = VocAnnotation(f"{name}.jpg", SOURCE_SIZE[0], SOURCE_SIZE[1],
                                   tuple(VocObject(cls, tuple(map(float, box))) for cls, box in objects))
        write_voc_xml(source / ANNOTATIONS_DIR / f"{name}.xml", annotation)
    assert data_main(["voc2012", "--root", str(source), "--val-fraction", "0"]) == 0
    subset = root / "overfit_subset"
    assert data_main(["overfit-subset", "--source-json", str(source / "train.json"), "--out", str(subset),
                      "--image-size", str(image_size), "--count", str(len(VOC_OBJECTS)), "--min-box-side", "8"]) == 0
    return subset


#: Grades with the real runner in a fresh interpreter and prints the overfit group's outcome as JSON.
#: A fresh process because the runner's pytest session imports ``autograder/checks/test_overfit.py``
#: by its base name, which this kit session may already hold for another file; it also keeps
#: the runner's process-wide settings (child subreaper) out of the kit's test process.
#: argv: files as JSON, reference folder, profile file ("" for the shipped), data folder ("" none), force (0/1).
_DRIVER = """
import json, sys
from pathlib import Path
from autograder.overfit_profile import OverfitChoice
from autograder.runner import GradeSettings, run_checks
files = {name: Path(path) for name, path in json.loads(sys.argv[1]).items()}
profile, data = (Path(a) if a else None for a in sys.argv[3:5])
choice = OverfitChoice(profile=profile, data=data, force=sys.argv[5] == "1")
run = run_checks(GradeSettings(reference_dir=Path(sys.argv[2]), keyword="test_overfit_smoke", overfit=choice), files)
(group,) = [g for g in run.groups if g.entry.id == "overfit"]
print(json.dumps({"passed": group.passed, "failed": group.failed, "failures": group.failures,
                  "notes": group.instructor_notes, "collect_errors": run.collect_errors,
                  "output": group.student_output[-2000:]}))
"""


def grade_overfit(
    files: dict[str, Path], profile: Path | None = None, data: Path | None = None, force: bool = False
) -> dict[str, object]:
    """Run the overfit check with the real runner and sandbox on ``files``; its outcome.

    Asserts that the run had no grader error: its only instructor note is the one naming the
    profile (the check's ``instructor_note``).
    """
    from rcnn_kit.course import REFERENCE_DIR

    env = {**os.environ, "RCNN_KIT_OFFLINE": "1"}
    args = [json.dumps({k: str(v) for k, v in files.items()}), str(REPO_ROOT / REFERENCE_DIR),
            str(profile or ""), str(data or ""), "1" if force else "0"]
    done = subprocess.run([sys.executable, "-c", _DRIVER, *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    notes = outcome["notes"]
    assert not outcome["collect_errors"] and len(notes) == 1 and notes[0].startswith("overfit profile "), outcome
    return outcome
