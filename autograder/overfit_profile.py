"""Overfit profiles: what the overfit smoke test trains on, how long, and its calibrated pass mark.

A profile is a TOML file written by ``rcnn-kit calibrate-overfit`` (:mod:`autograder.calibration`)
and read by the check (``autograder/checks/test_overfit.py``). The kit ships one per device
class in :data:`PROFILES_DIR`: ``cpu.toml`` (calibrated on the 2-core CPU machine) and ``cuda.toml``
(calibrated on one H200; docs/OVERFIT_CALIBRATION.md). Layout::

    device = "cpu"            # device class it was calibrated on: "cpu" or "cuda"
    calibrated = true         # false: measured, but the reference and the broken detectors
                              # did not separate (or never measured); never graded with unless forced
    [data]                    # kind "synthetic" (generated at grading from seed) or "subset"
    kind = "synthetic"        # (a folder made by `rcnn-kit data overfit-subset`)
    num_images = 4
    image_size = 192
    seed = 1                  # synthetic only
    max_objects = 3           # synthetic only
    sha256 = "..."            # autograder.overfit_data.files_sha256 of the files it was calibrated on
    [training]                # batch_size, iterations, lr, warmup_iters, grad_clip_norm, threads,
    ...                       # post_nms_topk, seed
    [evaluation]              # score_thresh, nms_thresh, pass_map, timeout_s, metric
    ...
    [provenance]              # the calibration's record (machine, versions, seeds, scores, times)
    ...

Which profile grades (:func:`choose_profile`): ``--overfit-profile FILE`` when given, else
the shipped profile of the grading device; an uncalibrated GPU profile falls back to the CPU
profile. A profile calibrated for another device class, or marked uncalibrated, is refused
unless ``--force-overfit-profile`` is given.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

#: The shipped profiles, ``<device class>.toml``.
PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
#: Device classes a profile is calibrated for (``torch.device`` types).
DEVICE_CLASSES = ("cpu", "cuda")
#: Kinds of training data.
DATA_KINDS = ("synthetic", "subset")
#: The CPU profile, which also grades on a GPU while the GPU profile is uncalibrated.
FALLBACK_DEVICE = "cpu"
#: The flag that lets an instructor grade with a refused profile.
FORCE_FLAG = "--force-overfit-profile"
#: Fields of :class:`OverfitProfile` stored in each TOML section.
TRAINING_FIELDS = ("batch_size", "iterations", "lr", "warmup_iters", "grad_clip_norm", "threads", "post_nms_topk", "seed")
EVALUATION_FIELDS = ("score_thresh", "nms_thresh", "pass_map", "timeout_s", "metric")
#: mAP definitions a profile may be calibrated with (rcnn_kit.engine.mean_average_precision's ``method``).
METRICS = ("voc", "voc07", "coco")
#: Header comment of a written profile file.
FILE_HEADER = (
    "# Overfit smoke-test profile (autograder/overfit_profile.py, docs/OVERFIT_CALIBRATION.md).\n"
    "# Written by `rcnn-kit calibrate-overfit`; [provenance] records how it was measured.\n"
)


class ProfileRefused(ValueError):
    """A profile (or its data) does not fit this grading run; the message says why and how to force it."""


@dataclass(frozen=True)
class OverfitData:
    """The training images of the overfit test.

    Attributes:
        kind: ``"synthetic"`` (made at grading by :func:`rcnn_kit.data.make_synthetic_voc` from
            ``seed``) or ``"subset"`` (a folder made by ``rcnn-kit data overfit-subset``).
        num_images: training images N (every image of a subset).
        image_size: their side S in pixels.
        seed: synthetic only: seed of the generator.
        max_objects: synthetic only: most shapes per image.
        sha256: :func:`autograder.overfit_data.files_sha256` of the files calibrated on ("" unknown).
    """

    kind: str
    num_images: int
    image_size: int
    seed: int = 0
    max_objects: int = 3
    sha256: str = ""

    def __post_init__(self) -> None:
        if self.kind not in DATA_KINDS:
            raise ValueError(f"data.kind: expected one of {DATA_KINDS}, got {self.kind!r}")
        _positive_ints(self, ("num_images", "image_size", "max_objects"), "data.")
        if self.image_size % 32 != 0:
            raise ValueError(f"data.image_size: expected a multiple of 32 (the coarsest stride), got {self.image_size!r}")


@dataclass(frozen=True)
class OverfitProfile:
    """Everything one overfit run depends on (data, schedule, evaluation, pass mark).

    Attributes:
        device: device class it was calibrated on, ``"cpu"`` or ``"cuda"``.
        calibrated: whether ``pass_map`` separated the reference from the broken detectors.
        data: the training images.
        batch_size: images per SGD step.
        iterations: SGD steps.
        lr: base learning rate after warm-up (0.01 converges from random init; 0.02 diverged).
        warmup_iters: linear warm-up iterations.
        grad_clip_norm: global gradient-norm clip.
        threads: torch intra-op threads of the run (0 keeps the process's setting).
        post_nms_topk: proposals the RPN keeps per level and image (the ``rpn.RPN`` argument).
            Few proposals make the detections depend on the RPN having learned: with many, the
            second stage finds the objects among untrained anchors alone.
        seed: seed of the weight init, sampling and data order.
        score_thresh: inference score threshold for the evaluation.
        nms_thresh: inference class-specific NMS threshold.
        pass_map: the submission passes when training-set mAP@0.5 >= this.
        timeout_s: wall-clock target of one run on the profile's machine; the hard limit is the
            rubric entry's ``timeout_s`` (at least this, tested).
        metric: the mAP definition the pass mark was calibrated with (``"voc"``: VOC all-point,
            the kit's default; ``"coco"``: COCO-style 101-point), so grading scores the same way.
        name: shown in feedback (the file's stem).
        source: the file it was read from (None: built in code).
        provenance: the calibration's record (informational).
    """

    device: str
    calibrated: bool
    data: OverfitData
    batch_size: int
    iterations: int
    lr: float
    warmup_iters: int
    grad_clip_norm: float
    threads: int
    post_nms_topk: int
    seed: int
    score_thresh: float
    nms_thresh: float
    pass_map: float
    timeout_s: float
    metric: str = "voc"
    name: str = ""
    source: Path | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.device not in DEVICE_CLASSES:
            raise ValueError(f"device: expected one of {DEVICE_CLASSES}, got {self.device!r}")
        _positive_ints(self, ("batch_size", "iterations", "post_nms_topk"), "")
        if self.warmup_iters < 0 or self.threads < 0:
            raise ValueError(f"warmup_iters, threads: expected >= 0, got {self.warmup_iters!r}, {self.threads!r}")
        if self.metric not in METRICS:
            raise ValueError(f"metric: expected one of {METRICS}, got {self.metric!r}")
        if not 0.0 < self.pass_map <= 1.0:
            raise ValueError(f"pass_map: expected a value in (0, 1], got {self.pass_map!r}")
        if not 0.0 <= self.score_thresh < 1.0 or not 0.0 < self.nms_thresh <= 1.0:
            raise ValueError(f"score_thresh, nms_thresh: out of range, got {self.score_thresh!r}, {self.nms_thresh!r}")

    def probe_params(self, num_classes: int) -> dict[str, Any]:
        """Keyword arguments of :func:`autograder.sandboxed.probes_overfit.overfit_train` (JSON-able)."""
        params = {name: getattr(self, name) for name in TRAINING_FIELDS}
        params.update(num_classes=num_classes, score_thresh=self.score_thresh, nms_thresh=self.nms_thresh, device="auto")
        return params

    def replace(self, **changes: Any) -> OverfitProfile:
        """A copy with ``changes`` (e.g. another training seed; the calibration runs many)."""
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        """One line for the instructor log: file, device class, calibration date and machine, thresholds."""
        prov = self.provenance
        when = f"calibrated {prov.get('date', '?')} on {prov.get('device_name', '?')}" if self.calibrated else "NOT calibrated"
        return (
            f"overfit profile {self.source or self.name} (device class {self.device}, {when}): pass_map "
            f"{self.pass_map:g}, {self.iterations} iterations, {self.data.num_images} {self.data.kind} images of "
            f"{self.data.image_size} px, data sha256 {self.data.sha256[:12] or '?'}"
        )


def _positive_ints(obj: object, names: tuple[str, ...], prefix: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{prefix}{name}: expected a positive int, got {value!r}")


# ---------------------------------------------------------------------------- files


def load_profile(path: str | Path) -> OverfitProfile:
    """Read a profile file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not TOML, a section or key is missing or unknown, or a value is out of
            range (the message names the file).
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not a TOML file ({exc})") from exc
    try:
        unknown = set(data) - {"device", "calibrated", "data", "training", "evaluation", "provenance"}
        for section, names in (("training", TRAINING_FIELDS), ("evaluation", EVALUATION_FIELDS)):
            unknown |= {f"{section}.{k}" for k in set(data[section]) - set(names)}
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}")
        return OverfitProfile(
            device=data["device"], calibrated=bool(data["calibrated"]), data=OverfitData(**data["data"]),
            **{name: data["training"][name] for name in TRAINING_FIELDS},
            **{name: data["evaluation"][name] for name in EVALUATION_FIELDS if name != "metric"},
            metric=data["evaluation"].get("metric", "voc"),
            name=path.stem, source=path, provenance=data.get("provenance", {}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        what = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ValueError(f"{path}: not a valid overfit profile: {what}") from exc


def profile_document(profile: OverfitProfile) -> dict[str, Any]:
    """The TOML document of ``profile`` as nested dicts (what :func:`write_profile` writes)."""
    return {
        "device": profile.device,
        "calibrated": profile.calibrated,
        "data": dataclasses.asdict(profile.data),
        "training": {name: getattr(profile, name) for name in TRAINING_FIELDS},
        "evaluation": {name: getattr(profile, name) for name in EVALUATION_FIELDS},
        "provenance": dict(profile.provenance),
    }


def write_profile(profile: OverfitProfile, path: str | Path) -> Path:
    """Write ``profile`` as TOML to ``path`` (its folder is created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(FILE_HEADER + dumps_toml(profile_document(profile)), encoding="utf-8")
    return path


# TOML is written by hand: tomllib only reads, the schema is small (scalars, flat lists, nested
# tables), and the GPU machine that calibrates has no TOML writer installed.
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def dumps_toml(document: Mapping[str, Any]) -> str:
    """TOML text of ``document``: scalars and lists first, then each nested table as a section.

    Raises:
        TypeError: a value is not a bool, int, float, str, list of those, or a mapping.
    """
    lines: list[str] = []
    _dump_table(document, (), lines)
    return "\n".join(lines).strip("\n") + "\n"


def _dump_table(table: Mapping[str, Any], prefix: tuple[str, ...], lines: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, Mapping)}
    if prefix:
        lines += ["", "[" + ".".join(_toml_key(p) for p in prefix) + "]"]
    lines += [f"{_toml_key(k)} = {_toml_value(v, '.'.join((*prefix, k)))}" for k, v in scalars.items()]
    for key, value in table.items():
        if isinstance(value, Mapping):
            _dump_table(value, (*prefix, key), lines)


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def _toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return ("-inf" if value < 0 else "inf") if math.isinf(value) else "nan" if math.isnan(value) else repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item, where) for item in value) + "]"
    if isinstance(value, Path):
        return _toml_string(value.as_posix())
    raise TypeError(f"{where}: cannot write {type(value).__name__} {value!r} to TOML")


# ---------------------------------------------------------------------------- choosing


@dataclass(frozen=True)
class OverfitChoice:
    """The instructor's choice for one grading run (``rcnn-kit grade`` flags).

    Attributes:
        profile: ``--overfit-profile FILE`` (None: the shipped profile of the grading device).
        data: ``--overfit-data DIR``, an overfit subset folder (None: the profile's own data).
        force: ``--force-overfit-profile``: grade even with a profile or data that would be refused.
    """

    profile: Path | None = None
    data: Path | None = None
    force: bool = False


def choose_profile(
    device: str, choice: OverfitChoice = OverfitChoice(), profiles_dir: Path = PROFILES_DIR
) -> tuple[OverfitProfile, list[str]]:
    """The profile that grades on ``device``, and notes for the instructor log.

    Args:
        device: the grading device class, ``"cpu"`` or ``"cuda"``.
        choice: the instructor's flags.
        profiles_dir: folder of the shipped ``<device>.toml`` profiles.

    Returns:
        (the profile, notes: the fallback or the forcing, if any).

    Raises:
        ValueError: unknown ``device``, or an unreadable profile file.
        FileNotFoundError: the profile file does not exist.
        ProfileRefused: the profile was calibrated for another device class, or is marked
            uncalibrated, and ``choice.force`` is False.
    """
    if device not in DEVICE_CLASSES:
        raise ValueError(f"device: expected one of {DEVICE_CLASSES}, got {device!r}")
    notes: list[str] = []
    if choice.profile is not None:
        profile = load_profile(choice.profile)
    else:
        profile = load_profile(profiles_dir / f"{device}.toml")
        if not profile.calibrated and device != FALLBACK_DEVICE:
            notes.append(f"the {device} profile ({profile.source}) is not calibrated: the {FALLBACK_DEVICE} profile "
                         "grades, on this device (docs/OVERFIT_CALIBRATION.md)")
            profile = load_profile(profiles_dir / f"{FALLBACK_DEVICE}.toml")
            device = FALLBACK_DEVICE  # the documented fallback is not a device-class mismatch
    problems = []
    if profile.device != device:
        problems.append(f"it was calibrated for device class {profile.device!r} and this grading runs on {device!r}")
    if not profile.calibrated:
        problems.append("it is marked calibrated = false (its pass mark did not separate the reference from "
                        "the broken detectors, or was never measured)")
    if problems and not choice.force:
        raise ProfileRefused(f"overfit profile {profile.source}: {'; '.join(problems)}; recalibrate with "
                             f"`rcnn-kit calibrate-overfit`, or pass {FORCE_FLAG} to grade with it anyway")
    notes += [f"FORCED ({FORCE_FLAG}): {problem}" for problem in problems]
    return profile, notes


# ---------------------------------------------------------------------------- command line


def add_grading_flags(group: Any) -> None:
    """Add ``--overfit-profile``, ``--overfit-data`` and ``--force-overfit-profile`` to a parser (group)."""
    group.add_argument("--overfit-profile", type=Path, default=None,
                       help=f"overfit profile file (default: {PROFILES_DIR}/<device>.toml)")
    group.add_argument("--overfit-data", type=Path, default=None,
                       help="overfit subset folder the profile was calibrated on (default: the profile's own data)")
    group.add_argument(FORCE_FLAG, dest="force_overfit_profile", action="store_true",
                       help="grade with a profile calibrated for another device class, uncalibrated, or other data")


def grading_argv(args: Any) -> list[str]:
    """The flags of :func:`add_grading_flags` as given, for a ``grade`` run in another process."""
    argv = []
    for flag, value in (("--overfit-profile", args.overfit_profile), ("--overfit-data", args.overfit_data)):
        if value is not None:
            argv += [flag, str(value)]
    return argv + ([FORCE_FLAG] if args.force_overfit_profile else [])


def choice_from_args(args: Any) -> OverfitChoice:
    """The :class:`OverfitChoice` of the flags; refuses it now (exit status 2) when grading would.

    Checked unless ``--skip-overfit``: the profile (:func:`choose_profile` on the device
    ``--device`` resolves to) and, for a subset profile, that the data folder exists.
    """
    choice = OverfitChoice(args.overfit_profile, args.overfit_data, bool(args.force_overfit_profile))
    if getattr(args, "skip_overfit", False):
        return choice
    try:
        import torch

        device = "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
        profile, _ = choose_profile(device, choice)
        if profile.data.kind == "subset" or choice.data is not None:
            from autograder.overfit_data import default_subset_dir

            folder = choice.data or default_subset_dir()
            if not folder.is_dir():
                raise FileNotFoundError(f"overfit data: {folder} does not exist (profile {profile.source})")
    except (ValueError, FileNotFoundError) as exc:
        print(f"rcnn-kit: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return choice
