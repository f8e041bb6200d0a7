"""Region Proposal Network (RPN): the first stage of Faster R-CNN.

Shape glossary: B images; level ``pk`` has an H x W feature map with C
channels; A anchors per location (one per aspect ratio); R anchors in total
over all levels (sum of H*W*A).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .anchors import generate_fpn_anchors, get_fpn_location_coords
from .deltas import (
    IGNORED_DELTA,
    clip_boxes_to_image,
    rcnn_apply_deltas_to_anchors,
    rcnn_get_deltas_from_anchors,
)
from .iou import iou
from .nms import nms

#: Standard deviation of the normal init of the RPN's convolution weights.
RPN_INIT_STD = 0.01

#: Fraction of the sampled anchors that are foreground (when enough exist).
RPN_FG_FRACTION = 0.5


def rcnn_match_anchors_to_gt(
    anchor_boxes: torch.Tensor,
    gt_boxes: torch.Tensor,
    iou_thresholds: tuple[float, float],
) -> torch.Tensor:
    """Match every anchor (or proposal) with the GT box it overlaps most.

    Args:
        anchor_boxes: Tensor[R, 4], boxes in (x1, y1, x2, y2) format.
        gt_boxes: Tensor[G, 5] rows (x1, y1, x2, y2, class) of one image; rows of
            all -1 are padding and ignored.
        iou_thresholds: (low, high). IoU <= low: background; low < IoU < high:
            neutral; IoU >= high: foreground.

    Returns:
        Tensor[R, 5]: the matched GT row for foreground anchors, all -1 for
        background anchors and all -1e8 for neutral ones.
    """
    if gt_boxes.dim() != 2 or gt_boxes.shape[-1] != 5:
        raise ValueError(f"gt_boxes: expected Tensor[G, 5] for one image, got shape {tuple(gt_boxes.shape)}")
    gt_boxes = gt_boxes[gt_boxes[:, 4] != -1]
    if gt_boxes.shape[0] == 0:
        return anchor_boxes.new_full((anchor_boxes.shape[0], 5), -1.0)
    match_quality, matched_idxs = iou(anchor_boxes, gt_boxes[:, :4]).max(dim=1)  # (R,), (R,)
    matched_gt_boxes = gt_boxes[matched_idxs].clone()  # (R, 5)
    low, high = iou_thresholds
    matched_gt_boxes[match_quality <= low] = -1.0
    matched_gt_boxes[(match_quality > low) & (match_quality < high)] = IGNORED_DELTA
    return matched_gt_boxes


def sample_rpn_training(
    gt_boxes: torch.Tensor,
    num_samples: int,
    fg_fraction: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Randomly sample foreground and background anchors for the loss.

    Args:
        gt_boxes: Tensor[R, 5] matched GT rows from :func:`rcnn_match_anchors_to_gt`.
        num_samples: total number of anchors to sample.
        fg_fraction: at most this fraction of the samples are foreground; the rest
            are filled with background.
        generator: optional random generator, so callers can make sampling
            reproducible independently of the global seed.

    Returns:
        (fg_idx, bg_idx): Tensor[F] and Tensor[Bg] int64 indices into ``gt_boxes``.
    """
    foreground = (gt_boxes[:, 4] >= 0).nonzero().squeeze(1)
    background = (gt_boxes[:, 4] == -1).nonzero().squeeze(1)
    num_fg = min(int(num_samples * fg_fraction), foreground.numel())
    num_bg = min(num_samples - num_fg, background.numel())
    # randperm on the CPU with an optional generator: identical draws on any device.
    fg_perm = torch.randperm(foreground.numel(), generator=generator)[:num_fg].to(foreground.device)
    bg_perm = torch.randperm(background.numel(), generator=generator)[:num_bg].to(background.device)
    return foreground[fg_perm], background[bg_perm]


class RPNPredictionNetwork(nn.Module):
    """Objectness and box-delta prediction on every FPN level (weights shared across levels).

    Args:
        in_channels: channels C of the FPN features.
        stem_channels: output channels of the 3x3 conv + ReLU layers of the stem.
        num_anchors: A, anchors per location.

    Attributes:
        stem_rpn (nn.Sequential): the stem.
        pred_obj (nn.Conv2d): 1x1 conv, A objectness logits per location.
        pred_box (nn.Conv2d): 1x1 conv, 4A box deltas per location, channels
            ordered (A, 4): anchor ``a``'s (dx, dy, dw, dh) are channels 4a..4a+3.
    """

    def __init__(self, in_channels: int, stem_channels: Sequence[int], num_anchors: int = 3) -> None:
        super().__init__()
        self.num_anchors = num_anchors
        # Build `self.stem_rpn`: for each entry of stem_channels a 3x3 conv
        # (padding 1, so the map keeps its size) followed by ReLU; the first conv
        # takes `in_channels` (never a fixed number such as 256). Then the 1x1
        # convs `self.pred_obj` (A outputs) and `self.pred_box` (4A outputs).
        # Initialise every conv weight from N(0, 0.01) and every bias to 0.
        ### BEGIN SOLUTION
        layers: list[nn.Module] = []
        channels = in_channels
        for out_channels in stem_channels:
            layers += [nn.Conv2d(channels, out_channels, kernel_size=3, padding=1), nn.ReLU()]
            channels = out_channels
        self.stem_rpn = nn.Sequential(*layers)
        self.pred_obj = nn.Conv2d(channels, num_anchors, kernel_size=1)
        self.pred_box = nn.Conv2d(channels, 4 * num_anchors, kernel_size=1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, mean=0.0, std=RPN_INIT_STD)
                nn.init.zeros_(module.bias)
        ### END SOLUTION

    def forward(
        self, feats_per_fpn_level: dict[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Predict on every level.

        Args:
            feats_per_fpn_level: ``{level: Tensor[B, C, H, W]}``.

        Returns:
            (object_logits, boxreg_deltas): ``{level: Tensor[B, H*W*A]}`` (no trailing
            dimension of size 1) and ``{level: Tensor[B, H*W*A, 4]}``, location-major
            (the A anchors of a location are consecutive), matching
            :func:`generate_fpn_anchors`: permute (B, A, H, W) to (B, H, W, A) before
            reshaping.
        """
        object_logits: dict[str, torch.Tensor] = {}
        boxreg_deltas: dict[str, torch.Tensor] = {}
        for level_name, feats in feats_per_fpn_level.items():
            # Run the stem and both predictors, then flatten so that index
            # (y * W + x) * A + a addresses anchor a at location (x, y).
            ### BEGIN SOLUTION
            batch_size, _, height, width = feats.shape
            stem = self.stem_rpn(feats)
            obj = self.pred_obj(stem)  # (B, A, H, W)
            box = self.pred_box(stem)  # (B, 4A, H, W)
            object_logits[level_name] = obj.permute(0, 2, 3, 1).reshape(batch_size, -1)  # (B, H, W, A) -> (B, H*W*A)
            boxreg_deltas[level_name] = box.permute(0, 2, 3, 1).reshape(
                batch_size, height * width * self.num_anchors, 4
            )  # (B, H, W, 4A) -> (B, H*W*A, 4)
            ### END SOLUTION
        return object_logits, boxreg_deltas


class RPN(nn.Module):
    """Region Proposal Network: anchors, objectness + box deltas, proposals, losses.

    Args:
        fpn_channels: channels C of the FPN features.
        stem_channels: stem of the :class:`RPNPredictionNetwork`.
        batch_size_per_image: anchors sampled per image for the losses.
        anchor_stride_scale: anchor side in units of the level stride.
        anchor_aspect_ratios: A aspect ratios (height / width).
        anchor_iou_thresholds: (background below-or-at, foreground at-or-above) IoU thresholds,
            (low, high) in that order; the second stage uses its own (0.5, 0.5).
        nms_thresh: NMS IoU threshold for proposals.
        pre_nms_topk: highest-scoring anchors kept per level and image before NMS.
        post_nms_topk: proposals kept per level and image after NMS.

    Attributes:
        pred_net (RPNPredictionNetwork): the prediction network.
        generator (torch.Generator | None): passed to :func:`sample_rpn_training`.
    """

    def __init__(
        self,
        fpn_channels: int,
        stem_channels: Sequence[int],
        batch_size_per_image: int,
        anchor_stride_scale: int = 8,
        anchor_aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
        anchor_iou_thresholds: tuple[float, float] = (0.3, 0.6),
        nms_thresh: float = 0.7,
        pre_nms_topk: int = 400,
        post_nms_topk: int = 100,
    ) -> None:
        super().__init__()
        self.pred_net = RPNPredictionNetwork(fpn_channels, stem_channels, num_anchors=len(anchor_aspect_ratios))
        self.batch_size_per_image = batch_size_per_image
        self.anchor_stride_scale = anchor_stride_scale
        self.anchor_aspect_ratios = list(anchor_aspect_ratios)
        self.anchor_iou_thresholds = tuple(anchor_iou_thresholds)
        self.nms_thresh = nms_thresh
        self.pre_nms_topk = pre_nms_topk
        self.post_nms_topk = post_nms_topk
        self.generator: torch.Generator | None = None

    def forward(
        self,
        feats_per_fpn_level: dict[str, torch.Tensor],
        strides_per_fpn_level: dict[str, int],
        gt_boxes: torch.Tensor | None = None,
    ) -> dict[str, object]:
        """Propose regions, and compute the RPN losses in training mode.

        Args:
            feats_per_fpn_level: ``{level: Tensor[B, C, H, W]}``.
            strides_per_fpn_level: ``{level: stride}``.
            gt_boxes: Tensor[B, G, 5] rows (x1, y1, x2, y2, class), padding rows
                all -1; required in training mode.

        Returns:
            ``{"proposals": {level: list of B Tensor[K_i, 4]}}`` (detached, XYXY,
            clipped to the image), plus scalar ``"loss_rpn_obj"`` and
            ``"loss_rpn_box"`` in training mode.
        """
        first_feats = next(iter(feats_per_fpn_level.values()))
        num_images = first_feats.shape[0]
        pred_obj_logits, pred_boxreg_deltas = self.pred_net(feats_per_fpn_level)

        # Anchors for every level, from the feature shapes and strides.
        ### BEGIN SOLUTION
        shapes = {level: feats.shape for level, feats in feats_per_fpn_level.items()}
        locations = get_fpn_location_coords(
            shapes, strides_per_fpn_level, dtype=first_feats.dtype, device=first_feats.device
        )
        anchors_per_fpn_level = generate_fpn_anchors(
            locations, strides_per_fpn_level, self.anchor_stride_scale, self.anchor_aspect_ratios
        )
        ### END SOLUTION

        level = next(iter(feats_per_fpn_level))
        image_size = (
            first_feats.shape[2] * strides_per_fpn_level[level],
            first_feats.shape[3] * strides_per_fpn_level[level],
        )
        output: dict[str, object] = {
            "proposals": self.predict_proposals(
                anchors_per_fpn_level, pred_obj_logits, pred_boxreg_deltas, image_size
            )
        }
        if not self.training:
            return output
        if gt_boxes is None:
            raise ValueError("gt_boxes: required in training mode, got None")
        if gt_boxes.dim() != 3 or gt_boxes.shape[0] != num_images or gt_boxes.shape[-1] != 5:
            raise ValueError(f"gt_boxes: expected Tensor[{num_images}, G, 5], got shape {tuple(gt_boxes.shape)}")

        anchor_boxes = torch.cat(list(anchors_per_fpn_level.values()), dim=0)  # (R, 4)
        obj_logits = torch.cat(list(pred_obj_logits.values()), dim=1)  # (B, R)
        boxreg = torch.cat(list(pred_boxreg_deltas.values()), dim=1)  # (B, R, 4)

        # Match anchors to GT per image (rcnn_match_anchors_to_gt with
        # self.anchor_iou_thresholds), sample `batch_size_per_image` anchors per
        # image with `sample_rpn_training` (foreground fraction RPN_FG_FRACTION,
        # generator self.generator), then:
        #   loss_rpn_obj: BCE-with-logits, target 1 for foreground, 0 for background;
        #   loss_rpn_box: L1 (not smooth-L1) between predicted and GT deltas, foreground only;
        # each summed and divided by batch_size_per_image * B.
        # Sample each image on its own, never once over the whole batch, and call the
        # given `sample_rpn_training` (the autograder swaps in a deterministic sampler;
        # a hand-written randperm sampler gives losses that cannot be checked).
        ### BEGIN SOLUTION
        sampled_logits, sampled_targets, fg_pred, fg_target = [], [], [], []
        for image_idx in range(num_images):
            matched = rcnn_match_anchors_to_gt(anchor_boxes, gt_boxes[image_idx], self.anchor_iou_thresholds)
            fg_idx, bg_idx = sample_rpn_training(
                matched, self.batch_size_per_image, RPN_FG_FRACTION, self.generator
            )
            idx = torch.cat([fg_idx, bg_idx])
            sampled_logits.append(obj_logits[image_idx, idx])
            sampled_targets.append(torch.cat([torch.ones_like(fg_idx), torch.zeros_like(bg_idx)]).to(obj_logits))
            fg_pred.append(boxreg[image_idx, fg_idx])
            fg_target.append(rcnn_get_deltas_from_anchors(anchor_boxes[fg_idx], matched[fg_idx]))
        normalizer = self.batch_size_per_image * num_images
        loss_obj = F.binary_cross_entropy_with_logits(
            torch.cat(sampled_logits), torch.cat(sampled_targets), reduction="sum"
        )
        loss_box = F.l1_loss(torch.cat(fg_pred), torch.cat(fg_target), reduction="sum")
        output["loss_rpn_obj"] = loss_obj / normalizer
        output["loss_rpn_box"] = loss_box / normalizer
        ### END SOLUTION
        return output

    @torch.no_grad()
    def predict_proposals(
        self,
        anchors_per_fpn_level: dict[str, torch.Tensor],
        pred_obj_logits: dict[str, torch.Tensor],
        pred_boxreg_deltas: dict[str, torch.Tensor],
        image_size: tuple[int, int],
    ) -> dict[str, list[torch.Tensor]]:
        """Turn predictions into proposals: top-k, decode, clip, NMS, top-k.

        Args:
            anchors_per_fpn_level: ``{level: Tensor[H*W*A, 4]}`` XYXY anchors.
            pred_obj_logits: ``{level: Tensor[B, H*W*A]}``.
            pred_boxreg_deltas: ``{level: Tensor[B, H*W*A, 4]}``.
            image_size: (height, width) of the input images in pixels: height first.
                Boxes are clipped to x in [0, width] and y in [0, height] (continuous
                coordinates: no ``- 1``).

        Returns:
            ``{level: list of B Tensor[K_i, 4]}`` proposals in decreasing order of
            objectness, at most ``post_nms_topk`` per level and image.
        """
        levels = list(anchors_per_fpn_level)
        num_images = pred_obj_logits[levels[0]].shape[0]
        proposals: dict[str, list[torch.Tensor]] = {level: [] for level in levels}
        for image_idx in range(num_images):
            # For each level: keep the `pre_nms_topk` highest objectness logits,
            # decode their deltas at their anchors, clip the boxes to the image
            # (clip_boxes_to_image) *before* NMS, run NMS with `self.nms_thresh` on
            # the clipped boxes and keep the first `post_nms_topk` survivors (NMS
            # returns them by decreasing score).
            ### BEGIN SOLUTION
            for level in levels:
                logits = pred_obj_logits[level][image_idx]  # (H*W*A,)
                top_scores, top_idx = logits.topk(min(self.pre_nms_topk, logits.shape[0]))
                boxes = rcnn_apply_deltas_to_anchors(
                    pred_boxreg_deltas[level][image_idx, top_idx], anchors_per_fpn_level[level][top_idx]
                )
                boxes = clip_boxes_to_image(boxes, image_size)
                keep = nms(boxes, top_scores, self.nms_thresh)[: self.post_nms_topk]
                proposals[level].append(boxes[keep])
            ### END SOLUTION
        return proposals
