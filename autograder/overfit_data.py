"""The overfit test's training images, on the grader's side: synthetic or an overfit subset.

Both kinds are a folder in the course layout (``train.json``, ``classes.txt``,
``JPEGImages/``): the synthetic one is written at grading time by
:func:`rcnn_kit.data.make_synthetic_voc` from the profile's seed (deterministic, offline);
a subset is a folder made by ``rcnn-kit data overfit-subset``, bundled by
``rcnn-kit autograder-zip`` at ``data/overfit_subset``. The grader loads the images as
tensors and sends them to the sandboxed child as probe inputs: the child reads no file.

Identity of the data: :func:`files_sha256` over the files the training set is read from,
recorded in the profile at calibration and compared at grading (:func:`load_training_set`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from autograder.overfit_profile import FORCE_FLAG, OverfitChoice, OverfitData, OverfitProfile, ProfileRefused
from rcnn_kit.data import VOCJsonDataset, make_synthetic_voc, read_class_names

#: Files of a data folder besides its images.
TRAIN_JSON = "train.json"
CLASSES_FILE = "classes.txt"


@dataclass
class TrainingSet:
    """The grader's copy of the training images and their ground truth.

    Attributes:
        images: Tensor[N, 3, S, S] float32, ImageNet-normalised.
        gt_boxes: Tensor[N, G, 5] rows (x1, y1, x2, y2, class), XYXY pixels, padding rows all -1.
        class_names: names of classes ``0..C-1``.
        sha256: :func:`files_sha256` of the files read.
        source: where the images came from, for messages.
        folder: the data folder they were read from (None: made in memory).
    """

    images: Tensor
    gt_boxes: Tensor
    class_names: tuple[str, ...]
    sha256: str = ""
    source: str = ""
    folder: Path | None = None

    @property
    def num_images(self) -> int:
        return self.images.shape[0]

    @property
    def image_size(self) -> int:
        return self.images.shape[-1]

    def probe_inputs(self) -> dict[str, Tensor]:
        """Inputs of :func:`probes_overfit.overfit_train` (copies: the grader's tensors stay untouched)."""
        return {"images": self.images.clone(), "gt_boxes": self.gt_boxes.clone()}

    def describe(self) -> str:
        """One line: source, count, size, classes, hash."""
        return (f"{self.source}: {self.num_images} images of {self.image_size} px, {len(self.class_names)} classes, "
                f"sha256 {self.sha256[:12]}")


def files_sha256(file_hashes: Mapping[str, str]) -> str:
    """One sha256 for a set of files: of the lines ``"<sha256>  <name>\\n"`` sorted by name (sha256sum's format).

    Args:
        file_hashes: ``{path relative to the data folder (POSIX): sha256 hex digest of the file}``.
    """
    text = "".join(f"{file_hashes[name]}  {name}\n" for name in sorted(file_hashes))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _open_folder(folder: Path, image_size: int) -> tuple[VOCJsonDataset, str]:
    """The folder's dataset and :func:`files_sha256` of ``train.json``, ``classes.txt`` and the images it lists."""
    from data_scripts.overfit_subset import sha256_of

    class_names = read_class_names(folder)
    if class_names is None:
        raise FileNotFoundError(f"overfit data: no {CLASSES_FILE} in {folder}")
    dataset = VOCJsonDataset(folder / TRAIN_JSON, image_size=image_size, class_names=class_names)
    if len(dataset) == 0:
        raise ValueError(f"overfit data: {folder / TRAIN_JSON} lists no image")
    names = [TRAIN_JSON, CLASSES_FILE, *(r.image_path.relative_to(folder).as_posix() for r in dataset.records)]
    return dataset, files_sha256({name: sha256_of(folder / name) for name in names})


def load_folder(folder: str | Path, image_size: int, source: str) -> TrainingSet:
    """Load ``folder/train.json`` (classes from ``classes.txt``) at ``image_size`` as stacked tensors.

    Raises:
        FileNotFoundError: ``train.json`` or ``classes.txt`` is missing.
        ValueError: the JSON is malformed, empty, or names an unknown class.
    """
    folder = Path(folder)
    dataset, sha256 = _open_folder(folder, image_size)
    items = [dataset[i] for i in range(len(dataset))]
    images = torch.stack([image for _, image, _ in items])  # N x (3, S, S) -> (N, 3, S, S)
    gt_boxes = torch.stack([gt for _, _, gt in items])  # N x (G, 5) -> (N, G, 5)
    return TrainingSet(images, gt_boxes, tuple(dataset.class_names), sha256, source, folder)


def synthetic_set(data: OverfitData, work_dir: str | Path) -> TrainingSet:
    """Write the synthetic images of ``data`` under ``work_dir`` (a new folder) and load them."""
    folder = make_synthetic_voc(Path(work_dir) / f"synthetic_seed{data.seed}", num_images=data.num_images,
                                image_size=data.image_size, seed=data.seed, max_objects=data.max_objects,
                                val_fraction=0.0)
    return load_folder(folder, data.image_size, f"synthetic images (seed {data.seed})")


def _verified_image_size(folder: Path) -> int:
    """Check an overfit subset folder against its manifest; its image side S.

    This is the kit's one use of the data scripts' subset format. It relies on
    :func:`data_scripts.overfit_subset.verify_manifest` (raises when a listed file is missing
    or changed; returns the manifest, whose ``"image_size"`` is the stored side S) and on the
    folder's ``train.json`` and ``classes.txt``.

    Raises:
        FileNotFoundError: no such folder, or it has no manifest.
        ValueError: its files do not match the manifest.
    """
    from data_scripts.overfit_subset import verify_manifest

    if not folder.is_dir():
        raise FileNotFoundError(f"overfit data: {folder} is not a folder")
    return int(verify_manifest(folder)["image_size"])


def subset_set(folder: str | Path) -> TrainingSet:
    """Load an overfit subset folder (made by ``rcnn-kit data overfit-subset``) after checking its manifest."""
    folder = Path(folder)
    return load_folder(folder, _verified_image_size(folder), f"overfit subset {folder}")


def subset_sha256(folder: str | Path) -> str:
    """:func:`files_sha256` of an overfit subset folder (checked against its manifest first)."""
    folder = Path(folder)
    return _open_folder(folder, _verified_image_size(folder))[1]


def check_bundle_data(profiles_dir: Path, overfit_data: Path | None) -> None:
    """Refuse an autograder bundle whose overfit subset is not the one a shipped profile was calibrated on.

    Args:
        profiles_dir: the bundle's profile folder (``autograder/profiles``).
        overfit_data: the subset folder to bundle (None: none).

    Raises:
        ValueError: a calibrated profile of ``profiles_dir`` trains on a subset, and none or
            another one is bundled (the message names the profile and both hashes).
    """
    from autograder.overfit_profile import load_profile

    needed = [p for p in map(load_profile, sorted(profiles_dir.glob("*.toml"))) if p.calibrated and p.data.kind == "subset"]
    bundled = subset_sha256(overfit_data) if needed and overfit_data is not None else None
    for profile in needed:
        path = profile.source
        if bundled != profile.data.sha256:
            what = f"the subset {overfit_data} (sha256 {bundled[:12]})" if bundled else "no overfit subset"
            raise ValueError(
                f"{path} was calibrated on an overfit subset with sha256 {profile.data.sha256[:12]}, but the bundle gets "
                f"{what}: pass --overfit-data with the folder it was calibrated on")


def data_spec(data: TrainingSet, kind: str, recipe: OverfitData | None = None) -> OverfitData:
    """The :class:`OverfitData` record of a loaded set (``recipe`` gives a synthetic set's seed and objects)."""
    extra = {"seed": recipe.seed, "max_objects": recipe.max_objects} if kind == "synthetic" and recipe else {}
    return OverfitData(kind=kind, num_images=data.num_images, image_size=data.image_size, sha256=data.sha256, **extra)


def default_subset_dir() -> Path:
    """Where a bundled overfit subset lies (``data/overfit_subset`` of the bundle or checkout)."""
    from autograder.gradescope_zip import default_overfit_data

    return default_overfit_data()


def load_training_set(
    profile: OverfitProfile, work_dir: str | Path, choice: OverfitChoice = OverfitChoice()
) -> tuple[TrainingSet, list[str]]:
    """The training set that ``profile`` grades with, and notes for the instructor log.

    Synthetic profiles generate their images (a hash that differs from the calibration's is
    noted, not refused: the recipe is the same, an image library may encode differently).
    Subset profiles read ``choice.data`` or the bundled :func:`default_subset_dir`, which must
    be the subset they were calibrated on (same :func:`files_sha256`).

    Raises:
        FileNotFoundError: the subset folder is missing.
        ValueError: the subset's files do not match its manifest.
        ProfileRefused: the data are not those the profile was calibrated on and
            ``choice.force`` is False.
    """
    spec = profile.data
    notes: list[str] = []
    if choice.data is None and spec.kind == "synthetic":
        data = synthetic_set(spec, work_dir)
        if spec.sha256 and data.sha256 != spec.sha256:
            notes.append(f"WARNING: {data.describe()}, but the profile was calibrated on sha256 {spec.sha256[:12]} "
                         "(same recipe; check the Pillow and numpy versions)")
        return data, notes + [f"overfit data: {data.describe()}"]
    folder = choice.data if choice.data is not None else default_subset_dir()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"overfit data: the profile {profile.source} trains on an overfit subset, but {folder} does not exist; "
            "bundle it with `rcnn-kit autograder-zip --overfit-data DIR` or pass --overfit-data DIR")
    data = subset_set(folder)
    if spec.kind != "subset":
        problem = f"the profile {profile.source} was calibrated on synthetic images, not on {data.describe()}"
    elif data.sha256 != spec.sha256:
        problem = (f"{data.describe()} is not the subset the profile {profile.source} was calibrated on "
                   f"(sha256 {spec.sha256[:12]})")
    else:
        problem = ""
    if problem and not choice.force:
        raise ProfileRefused(f"{problem}; calibrate on it with `rcnn-kit calibrate-overfit --data {folder}`, "
                             f"or pass {FORCE_FLAG} to grade with it anyway")
    return data, notes + ([f"FORCED ({FORCE_FLAG}): {problem}"] if problem else []) + [f"overfit data: {data.describe()}"]
