"""The overfit test's training data on the grader's side (autograder/overfit_data.py).

Oracles: ``sha256sum``'s own output format for the data hash, the VOC XML boxes the test
wrote for the subset's ground truth, and the subset's manifest for tampering.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from autograder.overfit_data import (
    check_bundle_data,
    files_sha256,
    load_training_set,
    subset_set,
    subset_sha256,
    synthetic_set,
)
from autograder.overfit_profile import (
    PROFILES_DIR, OverfitChoice, OverfitData, OverfitProfile, ProfileRefused, load_profile, write_profile,
)
from overfit_helpers import SOURCE_SIZE, VOC_OBJECTS, write_voc_subset
from rcnn_kit.data import VOC_CLASSES

CPU = load_profile(PROFILES_DIR / "cpu.toml")
SIZE = 64


@pytest.fixture(scope="module")
def subset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_voc_subset(tmp_path_factory.mktemp("voc"), image_size=SIZE)


def subset_profile(folder: Path, sha256: str) -> OverfitProfile:
    return CPU.replace(data=OverfitData(kind="subset", num_images=len(VOC_OBJECTS), image_size=SIZE, sha256=sha256))


def test_files_sha256_hashes_sha256sum_output(tmp_path: Path) -> None:
    for name, text in (("b.txt", "beta"), ("a/c.txt", "gamma")):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    hashes = {name: hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() for name in ("b.txt", "a/c.txt")}
    sha256sum_output = f"{hashes['a/c.txt']}  a/c.txt\n{hashes['b.txt']}  b.txt\n"  # coreutils' format, sorted
    assert files_sha256(hashes) == hashlib.sha256(sha256sum_output.encode()).hexdigest()


def test_synthetic_set_is_deterministic_and_is_what_the_cpu_profile_was_calibrated_on(tmp_path: Path) -> None:
    first, second = synthetic_set(CPU.data, tmp_path / "a"), synthetic_set(CPU.data, tmp_path / "b")
    assert first.sha256 == second.sha256 == CPU.data.sha256
    torch.testing.assert_close(first.images, second.images, rtol=0, atol=0)
    assert first.images.shape == (CPU.data.num_images, 3, CPU.data.image_size, CPU.data.image_size)


def test_voc_subset_loads_with_voc_classes_and_its_xml_boxes(subset: Path) -> None:
    data = subset_set(subset)
    assert data.class_names == VOC_CLASSES and data.images.shape == (len(VOC_OBJECTS), 3, SIZE, SIZE)
    # The course transform: shorter side (height) to SIZE, the longer to int(W * SIZE / H), centre crop.
    width, height = SOURCE_SIZE
    resized_width = int(width * SIZE / height)
    scale_x, scale_y, crop_x = resized_width / width, SIZE / height, round((resized_width - SIZE) / 2)
    for index, objects in enumerate(VOC_OBJECTS):  # the subset's ids sort like the objects' order
        gt = data.gt_boxes[index][data.gt_boxes[index][:, 4] >= 0]
        for (name, box), row in zip(objects, gt):
            x1, x2, y1, y2 = box[0] * scale_x, box[2] * scale_x, box[1] * scale_y, box[3] * scale_y
            expected = torch.tensor([max(x1 - crop_x, 0), y1, min(x2 - crop_x, SIZE), y2])
            torch.testing.assert_close(row[:4], expected, atol=0.02, rtol=0)
            assert VOC_CLASSES[int(row[4])] == name
    assert data.sha256 == subset_sha256(subset)


def test_a_subset_profile_grades_on_its_own_subset_only(subset: Path, tmp_path: Path) -> None:
    profile = subset_profile(subset, subset_sha256(subset))
    data, notes = load_training_set(profile, tmp_path, OverfitChoice(data=subset))
    assert data.num_images == len(VOC_OBJECTS) and notes[-1].startswith("overfit data: overfit subset")
    other = profile.replace(data=OverfitData(kind="subset", num_images=3, image_size=SIZE, sha256="0" * 64))
    with pytest.raises(ProfileRefused, match="is not the subset the profile"):
        load_training_set(other, tmp_path, OverfitChoice(data=subset))
    _, notes = load_training_set(other, tmp_path, OverfitChoice(data=subset, force=True))
    assert any(n.startswith("FORCED") for n in notes)
    with pytest.raises(ProfileRefused, match="calibrated on synthetic images"):
        load_training_set(CPU, tmp_path, OverfitChoice(data=subset))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_training_set(profile, tmp_path, OverfitChoice(data=tmp_path / "nowhere"))


def test_a_changed_subset_file_is_refused(subset: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(subset, copy)
    records = json.loads((copy / "train.json").read_text())
    records[0][1][0]["xyxy"][0] += 1.0
    (copy / "train.json").write_text(json.dumps(records))
    with pytest.raises(ValueError, match="train.json: content differs"):
        subset_set(copy)


def test_synthetic_profile_notes_images_that_differ_from_the_calibration(tmp_path: Path) -> None:
    drifted = CPU.replace(data=dataclasses.replace(CPU.data, sha256="f" * 64))
    data, notes = load_training_set(drifted, tmp_path)
    assert data.sha256 == CPU.data.sha256 and notes[0].startswith("WARNING") and "f" * 12 in notes[0]


def test_autograder_bundle_must_carry_the_subset_a_profile_was_calibrated_on(subset: Path, tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    write_profile(CPU, profiles / "cpu.toml")
    check_bundle_data(profiles, None)  # synthetic profiles need no subset
    write_profile(subset_profile(subset, subset_sha256(subset)), profiles / "cuda.toml")
    check_bundle_data(profiles, subset)
    with pytest.raises(ValueError, match="cuda.toml was calibrated on an overfit subset.*no overfit subset"):
        check_bundle_data(profiles, None)
