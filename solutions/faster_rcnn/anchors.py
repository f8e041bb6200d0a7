"""Feature-map location coordinates and FPN anchor boxes.

Shape glossary: level ``pk`` has a feature map of H x W locations with stride
``s`` pixels; A = number of aspect ratios (anchors per location).
"""

from __future__ import annotations

from typing import Sequence

import torch


def get_fpn_location_coords(
    shape_per_fpn_level: dict[str, tuple[int, ...]],
    strides_per_fpn_level: dict[str, int],
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> dict[str, torch.Tensor]:
    """Image-pixel centres of every feature-map location, per FPN level.

    Args:
        shape_per_fpn_level: ``{level: (B, C, H, W)}`` shapes of the FPN features.
        strides_per_fpn_level: ``{level: stride}`` in pixels, e.g. ``{"p3": 8, "p4": 16, "p5": 32}``.
        dtype: dtype of the returned coordinates.
        device: device of the returned coordinates.

    Returns:
        ``{level: Tensor[H*W, 2]}`` of ``(xc, yc) = ((x + 0.5) * stride, (y + 0.5) * stride)``
        (x first, cell centres) in row-major order (x varies fastest), in ``dtype``
        on ``device``.
    """
    location_coords: dict[str, torch.Tensor] = {}
    for level_name, feat_shape in shape_per_fpn_level.items():
        if len(feat_shape) != 4:
            raise ValueError(f"shape_per_fpn_level[{level_name!r}]: expected (B, C, H, W), got {tuple(feat_shape)}")
        if level_name not in strides_per_fpn_level:
            raise ValueError(f"strides_per_fpn_level: no stride for level {level_name!r}")
        level_stride = strides_per_fpn_level[level_name]
        # Build the (H*W, 2) grid of centres for this level: x in [0, W), y in
        # [0, H), each shifted by half a cell and scaled by the stride.
        ### BEGIN SOLUTION
        _, _, height, width = feat_shape
        xs = (torch.arange(width, dtype=dtype, device=device) + 0.5) * level_stride  # (W,)
        ys = (torch.arange(height, dtype=dtype, device=device) + 0.5) * level_stride  # (H,)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # (H, W) each
        location_coords[level_name] = torch.stack([grid_x, grid_y], dim=-1).reshape(-1, 2)  # (H, W, 2) -> (H*W, 2)
        ### END SOLUTION
    return location_coords


def generate_fpn_anchors(
    locations_per_fpn_level: dict[str, torch.Tensor],
    strides_per_fpn_level: dict[str, int],
    stride_scale: int,
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
) -> dict[str, torch.Tensor]:
    """Anchor boxes centred on every location of every FPN level.

    Each location gets one anchor per aspect ratio with area
    ``(stride_scale * stride) ** 2``, width ``sqrt(area / ratio)`` and height
    ``area / width`` (so ``ratio = height / width``).

    Args:
        locations_per_fpn_level: ``{level: Tensor[H*W, 2]}`` centres from :func:`get_fpn_location_coords`.
        strides_per_fpn_level: ``{level: stride}`` in pixels.
        stride_scale: anchor side length in units of the level's stride.
        aspect_ratios: A ratios ``height / width``.

    Returns:
        ``{level: Tensor[H*W*A, 4]}`` anchors in (x1, y1, x2, y2) format,
        location-major: the A anchors of location 0 (in ``aspect_ratios`` order),
        then those of location 1, and so on.
    """
    anchors_per_fpn_level: dict[str, torch.Tensor] = {}
    for level_name, locations in locations_per_fpn_level.items():
        if locations.dim() != 2 or locations.shape[-1] != 2:
            raise ValueError(
                f"locations_per_fpn_level[{level_name!r}]: expected Tensor[H*W, 2], got {tuple(locations.shape)}"
            )
        level_stride = strides_per_fpn_level[level_name]
        # For each aspect ratio compute the anchor's width and height from its
        # area, then place a box of that size at every location. Keep the
        # location-major order described in the docstring.
        ### BEGIN SOLUTION
        area = (stride_scale * level_stride) ** 2
        ratios = torch.as_tensor(list(aspect_ratios), dtype=locations.dtype, device=locations.device)  # (A,)
        widths = torch.sqrt(area / ratios)  # (A,)
        heights = area / widths  # (A,)
        half_sizes = torch.stack([widths, heights], dim=-1) / 2  # (A, 2)
        centres = locations[:, None, :]  # (H*W, 1, 2)
        boxes = torch.cat([centres - half_sizes, centres + half_sizes], dim=-1)  # (H*W, A, 4)
        anchors_per_fpn_level[level_name] = boxes.reshape(-1, 4)  # (H*W, A, 4) -> (H*W*A, 4)
        ### END SOLUTION
    return anchors_per_fpn_level
