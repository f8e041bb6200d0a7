"""RegNetX-400MF backbone with a small FPN giving p3, p4, p5.

Given code in the course: students build the RPN and the second stage on top
of the feature pyramid this module returns.

Shape glossary: B images, C FPN channels, level ``pk`` has stride ``2**k``
so a 224 px image gives p3 28x28, p4 14x14, p5 7x7.
"""

from __future__ import annotations

import os
import warnings

import torch
from torch import nn
from torch.nn import functional as F
from torchvision import models
from torchvision.models import feature_extraction

#: Stride of each FPN level relative to the input image.
FPN_STRIDES: dict[str, int] = {"p3": 8, "p4": 16, "p5": 32}

#: RegNetX-400MF trunk outputs feeding the FPN (c3, c4, c5) and their channel counts.
_TRUNK_NODES = {"trunk_output.block2": "c3", "trunk_output.block3": "c4", "trunk_output.block4": "c5"}
_TRUNK_CHANNELS = {"c3": 64, "c4": 160, "c5": 400}

#: Setting this environment variable to 1 skips any attempt to download weights.
OFFLINE_ENV = "RCNN_KIT_OFFLINE"

_warned_random_init = False


def _load_regnet(pretrained: bool | None) -> nn.Module:
    """RegNetX-400MF with ImageNet weights when possible, else random init with one warning.

    Args:
        pretrained: True requires the weights (raises if unavailable), False never
            loads them, None tries the local cache, then a download unless
            ``RCNN_KIT_OFFLINE=1``, and falls back to random init.
    """
    global _warned_random_init
    if pretrained is False:
        return models.regnet_x_400mf(weights=None)
    weights = models.RegNet_X_400MF_Weights.IMAGENET1K_V2
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
    offline = os.environ.get(OFFLINE_ENV, "") == "1"
    if pretrained is None and offline and not os.path.exists(cached):
        reason = f"{OFFLINE_ENV}=1 and no cached file at {cached}"
    else:
        try:
            return models.regnet_x_400mf(weights=weights)
        except Exception as exc:  # network errors come in many types (URLError, OSError, ...)
            if pretrained:
                raise RuntimeError(f"pretrained=True but ImageNet weights could not be loaded: {exc}") from exc
            reason = f"{type(exc).__name__}: {exc}"
    if not _warned_random_init:
        warnings.warn(
            f"RegNetX-400MF ImageNet weights unavailable ({reason}); using random init. "
            "Detection quality will be far lower than with pretrained weights.",
            stacklevel=3,
        )
        _warned_random_init = True
    return models.regnet_x_400mf(weights=None)


class DetectorBackboneWithFPN(nn.Module):
    """RegNetX-400MF trunk + FPN (lateral 1x1, top-down nearest upsampling, output 3x3).

    Args:
        out_channels: channels C of every FPN level.
        pretrained: see :func:`_load_regnet`.

    Attributes:
        out_channels (int): C.
        fpn_strides (dict[str, int]): ``{"p3": 8, "p4": 16, "p5": 32}``.
    """

    def __init__(self, out_channels: int, pretrained: bool | None = None) -> None:
        super().__init__()
        if not isinstance(out_channels, int) or out_channels <= 0:
            raise ValueError(f"out_channels: expected a positive int, got {out_channels!r}")
        self.out_channels = out_channels
        self.fpn_strides = dict(FPN_STRIDES)
        self.backbone = feature_extraction.create_feature_extractor(
            _load_regnet(pretrained), return_nodes=_TRUNK_NODES
        )
        self.fpn_params = nn.ModuleDict()
        for c, p in (("c3", "p3"), ("c4", "p4"), ("c5", "p5")):
            self.fpn_params[f"lateral_{c}"] = nn.Conv2d(_TRUNK_CHANNELS[c], out_channels, 1)
            self.fpn_params[f"output_{p}"] = nn.Conv2d(out_channels, out_channels, 3, padding=1)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Compute the pyramid.

        Args:
            images: Tensor[B, 3, H, W], ImageNet-normalised, H and W multiples of 32.

        Returns:
            ``{"p3": Tensor[B, C, H/8, W/8], "p4": Tensor[B, C, H/16, W/16], "p5": Tensor[B, C, H/32, W/32]}``.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images: expected Tensor[B, 3, H, W], got shape {tuple(images.shape)}")
        c = self.backbone(images)
        lat5 = self.fpn_params["lateral_c5"](c["c5"])
        lat4 = self.fpn_params["lateral_c4"](c["c4"]) + F.interpolate(lat5, size=c["c4"].shape[-2:], mode="nearest")
        lat3 = self.fpn_params["lateral_c3"](c["c3"]) + F.interpolate(lat4, size=c["c3"].shape[-2:], mode="nearest")
        return {
            "p3": self.fpn_params["output_p3"](lat3),
            "p4": self.fpn_params["output_p4"](lat4),
            "p5": self.fpn_params["output_p5"](lat5),
        }
