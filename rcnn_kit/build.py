"""Build the course's Faster R-CNN from any ``faster_rcnn`` package.

The runtime never imports the reference directly: callers pass an imported
``faster_rcnn`` package (the reference or a student's, see :mod:`rcnn_kit.impl`)
and :func:`build_detector` wires the given backbone
(:class:`rcnn_kit.backbone.DetectorBackboneWithFPN`) to that package's
``rpn.RPN`` and ``detector.FasterRCNN`` with the course's defaults.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from torch import nn

from rcnn_kit.backbone import DetectorBackboneWithFPN

#: Keyword arguments of ``rpn.RPN`` that :class:`DetectorConfig` may pass through ``rpn_kwargs``.
RPN_OPTIONAL_ARGS: frozenset[str] = frozenset(
    {
        "anchor_stride_scale",
        "anchor_aspect_ratios",
        "anchor_iou_thresholds",
        "nms_thresh",
        "pre_nms_topk",
        "post_nms_topk",
    }
)


@dataclass
class DetectorConfig:
    """Everything needed to rebuild a detector (stored in checkpoints as a plain dict).

    Attributes:
        num_classes: number of object classes C (background not counted).
        fpn_channels: channels of every FPN level (the course uses 64).
        stem_channels: output channels of the 3x3 conv stem shared by the RPN and the
            second-stage heads (the course uses two layers of 64).
        batch_size_per_image: RoIs sampled per image to train the second stage
            (the course uses 32).
        rpn_batch_size_per_image: anchors sampled per image to train the RPN
            (the course uses 16).
        roi_size: (height, width) of the RoI-Align output feeding the second stage.
        pretrained: ImageNet weights for the backbone trunk: True requires them,
            False never loads them, None uses them when available (see
            :class:`rcnn_kit.backbone.DetectorBackboneWithFPN`).
        rpn_kwargs: extra keyword arguments for ``rpn.RPN`` (anchor and NMS settings),
            keys from :data:`RPN_OPTIONAL_ARGS`; empty means the RPN's own defaults.
    """

    num_classes: int
    fpn_channels: int = 64
    stem_channels: tuple[int, ...] = (64, 64)
    batch_size_per_image: int = 32
    rpn_batch_size_per_image: int = 16
    roi_size: tuple[int, int] = (7, 7)
    pretrained: bool | None = None
    rpn_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("num_classes", "fpn_channels", "batch_size_per_image", "rpn_batch_size_per_image"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        self.stem_channels = tuple(self.stem_channels)
        if not self.stem_channels or any(not isinstance(c, int) or c <= 0 for c in self.stem_channels):
            raise ValueError(
                f"stem_channels: expected a non-empty sequence of positive ints, got {self.stem_channels!r}"
            )
        self.roi_size = tuple(self.roi_size)  # type: ignore[assignment]
        if len(self.roi_size) != 2 or any(not isinstance(s, int) or s <= 0 for s in self.roi_size):
            raise ValueError(f"roi_size: expected (height, width) positive ints, got {self.roi_size!r}")
        if self.pretrained not in (True, False, None):
            raise ValueError(f"pretrained: expected True, False or None, got {self.pretrained!r}")
        unknown = sorted(set(self.rpn_kwargs) - RPN_OPTIONAL_ARGS)
        if unknown:
            raise ValueError(f"rpn_kwargs: unknown RPN arguments {unknown}; allowed: {sorted(RPN_OPTIONAL_ARGS)}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (lists instead of tuples) that ``torch.load(weights_only=True)`` and JSON accept."""
        out = dataclasses.asdict(self)
        out["stem_channels"] = list(self.stem_channels)
        out["roi_size"] = list(self.roi_size)
        out["rpn_kwargs"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.rpn_kwargs.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectorConfig:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: ``data`` has keys that are not fields of this class.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"data: unknown DetectorConfig fields {unknown}; expected a subset of {sorted(names)}")
        return cls(**data)


def _submodule(pkg: ModuleType, name: str) -> ModuleType:
    """``pkg.<name>``, imported if needed; a clear error when ``pkg`` is not a faster_rcnn package."""
    if not hasattr(pkg, "__path__"):
        raise TypeError(f"pkg: expected an imported faster_rcnn package (see rcnn_kit.impl), got {pkg!r}")
    return importlib.import_module(f"{pkg.__name__}.{name}")


def build_detector_from_config(pkg: ModuleType, config: DetectorConfig) -> nn.Module:
    """Build backbone + ``pkg.rpn.RPN`` + ``pkg.detector.FasterRCNN`` as ``config`` says.

    Args:
        pkg: an imported ``faster_rcnn`` package (reference or student).
        config: the detector's settings.

    Returns:
        The ``FasterRCNN`` module (in training mode, on the CPU).
    """
    rpn_module = _submodule(pkg, "rpn")
    detector_module = _submodule(pkg, "detector")
    backbone = DetectorBackboneWithFPN(config.fpn_channels, pretrained=config.pretrained)
    rpn = rpn_module.RPN(
        fpn_channels=config.fpn_channels,
        stem_channels=list(config.stem_channels),
        batch_size_per_image=config.rpn_batch_size_per_image,
        **config.rpn_kwargs,
    )
    return detector_module.FasterRCNN(
        backbone,
        rpn,
        stem_channels=list(config.stem_channels),
        num_classes=config.num_classes,
        batch_size_per_image=config.batch_size_per_image,
        roi_size=tuple(config.roi_size),
    )


def build_detector(
    pkg: ModuleType,
    num_classes: int,
    *,
    fpn_channels: int = 64,
    stem_channels: tuple[int, ...] = (64, 64),
    batch_size_per_image: int = 32,
    rpn_batch_size_per_image: int = 16,
    roi_size: tuple[int, int] = (7, 7),
    pretrained: bool | None = None,
    **rpn_kwargs: Any,
) -> nn.Module:
    """Build the course's detector from ``pkg`` (see :class:`DetectorConfig` for every argument).

    Args:
        pkg: an imported ``faster_rcnn`` package (reference or student).
        num_classes: number of object classes C.
        fpn_channels: FPN channels.
        stem_channels: stem conv channels of the RPN and second-stage heads.
        batch_size_per_image: second-stage RoIs sampled per image.
        rpn_batch_size_per_image: RPN anchors sampled per image.
        roi_size: RoI-Align output size.
        pretrained: ImageNet weights for the trunk (True / False / None = when available).
        **rpn_kwargs: passed to ``rpn.RPN`` (e.g. ``pre_nms_topk=400``).

    Returns:
        The ``FasterRCNN`` module.
    """
    config = DetectorConfig(
        num_classes=num_classes,
        fpn_channels=fpn_channels,
        stem_channels=tuple(stem_channels),
        batch_size_per_image=batch_size_per_image,
        rpn_batch_size_per_image=rpn_batch_size_per_image,
        roi_size=roi_size,
        pretrained=pretrained,
        rpn_kwargs=dict(rpn_kwargs),
    )
    return build_detector_from_config(pkg, config)
