"""Faster R-CNN: the second stage on top of the RPN's proposals.

Shape glossary: B images; C classes (background is class 0 inside the head,
so the classifier has C + 1 outputs); P proposals over the whole batch; S the
RoI size (7 x 7 by default).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops import roi_align

from .deltas import clip_boxes_to_image, rcnn_apply_deltas_to_anchors, rcnn_get_deltas_from_anchors
from .nms import class_spec_nms
from .rpn import rcnn_match_anchors_to_gt, sample_rpn_training

#: Proposals with IoU > this value with a GT box are foreground for the second stage.
ROI_FG_IOU = 0.5

#: Fraction of the sampled proposals that are foreground (when enough exist).
ROI_FG_FRACTION = 0.25

#: Smooth-L1 transition point of the second-stage box loss (as in torchvision's RoI heads).
BOX_LOSS_BETA = 1.0 / 9.0

#: Inference defaults used when ``forward`` gets ``None`` thresholds.
DEFAULT_TEST_SCORE_THRESH = 0.5
DEFAULT_TEST_NMS_THRESH = 0.5

#: Canonical FPN level assignment (FPN paper, eq. 1): a 224 px box goes to p5.
_CANONICAL_SIZE, _CANONICAL_LEVEL = 224, 5


def mix_gt_with_proposals(
    proposals_per_fpn_level: dict[str, list[torch.Tensor]], gt_boxes: torch.Tensor
) -> dict[str, list[torch.Tensor]]:
    """Add each image's GT boxes to its proposals, on the FPN level that suits their size.

    Early in training the RPN proposes little of use; mixing the GT boxes in
    gives the second stage foreground examples from the first iteration on.

    Args:
        proposals_per_fpn_level: ``{level: list of B Tensor[K_i, 4]}`` XYXY proposals.
        gt_boxes: Tensor[B, G, 5] rows (x1, y1, x2, y2, class), padding rows all -1.

    Returns:
        A new dict of the same structure; the input is not modified.
    """
    mixed = {level: list(props) for level, props in proposals_per_fpn_level.items()}
    min_level = min(int(level[1:]) for level in mixed)
    max_level = max(int(level[1:]) for level in mixed)
    for image_idx, image_gt in enumerate(gt_boxes):
        image_gt = image_gt[image_gt[:, 4] != -1]
        if image_gt.shape[0] == 0:
            continue
        areas = (image_gt[:, 2] - image_gt[:, 0]) * (image_gt[:, 3] - image_gt[:, 1])
        assigned = torch.floor(_CANONICAL_LEVEL + torch.log2(areas.clamp(min=1e-6).sqrt() / _CANONICAL_SIZE))
        assigned = assigned.clamp(min_level, max_level).to(torch.int64)
        for level in mixed:
            level_gt = image_gt[assigned == int(level[1:]), :4]
            if level_gt.shape[0] > 0:
                mixed[level][image_idx] = torch.cat([mixed[level][image_idx], level_gt.to(mixed[level][image_idx])])
    return mixed


def flatten_proposals(
    proposals_per_fpn_level: dict[str, list[torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Concatenate per-level, per-image proposals into flat tensors.

    Args:
        proposals_per_fpn_level: ``{level: list of B Tensor[K_i, 4]}``.

    Returns:
        (boxes Tensor[P, 4], image_ids Tensor[P] int64, level_ids Tensor[P] int64),
        level-major: all boxes of level 0 (image 0, image 1, ...), then level 1, ...
        ``level_ids`` counts levels in the dict's order.
    """
    boxes, image_ids, level_ids = [], [], []
    for level_id, level_props in enumerate(proposals_per_fpn_level.values()):
        for image_idx, props in enumerate(level_props):
            boxes.append(props)
            image_ids.append(torch.full((props.shape[0],), image_idx, dtype=torch.int64, device=props.device))
            level_ids.append(torch.full((props.shape[0],), level_id, dtype=torch.int64, device=props.device))
    return torch.cat(boxes), torch.cat(image_ids), torch.cat(level_ids)


class FasterRCNN(nn.Module):
    """Faster R-CNN with FPN: backbone, RPN, RoIAlign, classification and class-specific box regression.

    Args:
        backbone: module with ``fpn_strides`` and ``out_channels`` whose forward
            returns ``{level: Tensor[B, out_channels, H, W]}``.
        rpn: the region proposal network (an ``RPN``).
        stem_channels: output channels of the 3x3 conv + ReLU layers applied to
            each RoI feature before the two predictors.
        num_classes: C, object classes (background excluded).
        batch_size_per_image: proposals sampled per image for the losses.
        roi_size: (h, w) of the RoIAlign output.

    Attributes:
        roi_stem (nn.Sequential): convs + ReLU, then flatten: Tensor[P, c, S, S] -> Tensor[P, c'*S*S].
        cls_pred (nn.Linear): C + 1 class logits per RoI (index 0 is background).
        box_pred (nn.Linear): 4C class-specific deltas per RoI, ordered (C, 4).
        generator (torch.Generator | None): passed to ``sample_rpn_training``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        rpn: nn.Module,
        stem_channels: Sequence[int],
        num_classes: int,
        batch_size_per_image: int,
        roi_size: tuple[int, int] = (7, 7),
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.rpn = rpn
        self.num_classes = num_classes
        self.roi_size = tuple(roi_size)
        self.batch_size_per_image = batch_size_per_image
        self.generator: torch.Generator | None = None
        # Build `self.roi_stem` (a 3x3 conv, padding 1, + ReLU per entry of
        # stem_channels, starting from backbone.out_channels, then nn.Flatten),
        # `self.cls_pred` (Linear to num_classes + 1 logits) and `self.box_pred`
        # (Linear to 4 * num_classes deltas). The Linear layers take
        # last stem channels * roi_size[0] * roi_size[1] features: use the
        # constructor's arguments, never a fixed channel count or a 7 x 7 RoI.
        ### BEGIN SOLUTION
        layers: list[nn.Module] = []
        channels = backbone.out_channels
        for out_channels in stem_channels:
            layers += [nn.Conv2d(channels, out_channels, kernel_size=3, padding=1), nn.ReLU()]
            channels = out_channels
        layers.append(nn.Flatten())
        self.roi_stem = nn.Sequential(*layers)
        flat_features = channels * self.roi_size[0] * self.roi_size[1]
        self.cls_pred = nn.Linear(flat_features, num_classes + 1)
        self.box_pred = nn.Linear(flat_features, 4 * num_classes)
        # Small init for the deltas so early boxes stay near their proposals.
        nn.init.normal_(self.box_pred.weight, std=0.001)
        nn.init.zeros_(self.box_pred.bias)
        ### END SOLUTION

    def forward(
        self,
        images: torch.Tensor,
        gt_boxes: torch.Tensor | None = None,
        test_score_thresh: float | None = None,
        test_nms_thresh: float | None = None,
    ):
        """Train (returns losses) or detect (returns boxes, classes, scores).

        Args:
            images: Tensor[B, 3, H, W]; B must be 1 in eval mode.
            gt_boxes: Tensor[B, G, 5] rows (x1, y1, x2, y2, class), padding rows
                all -1; required in training mode.
            test_score_thresh: eval only; minimum class score (default 0.5).
            test_nms_thresh: eval only; class-specific NMS threshold (default 0.5).

        Returns:
            Training: ``{"loss_rpn_obj", "loss_rpn_box", "loss_cls", "loss_box"}``
            scalar tensors. Eval: ``(pred_boxes Tensor[N, 4] XYXY, pred_classes
            Tensor[N] int64 in 0..C-1, pred_scores Tensor[N])``.
        """
        if images.dim() != 4:
            raise ValueError(f"images: expected Tensor[B, 3, H, W], got shape {tuple(images.shape)}")
        feats_per_fpn_level = self.backbone(images)
        strides = self.backbone.fpn_strides
        rpn_output = self.rpn(feats_per_fpn_level, strides, gt_boxes if self.training else None)
        proposals_per_fpn_level = rpn_output["proposals"]
        if not self.training:
            return self._inference(
                images,
                feats_per_fpn_level,
                proposals_per_fpn_level,
                DEFAULT_TEST_SCORE_THRESH if test_score_thresh is None else test_score_thresh,
                DEFAULT_TEST_NMS_THRESH if test_nms_thresh is None else test_nms_thresh,
            )
        proposals_per_fpn_level = mix_gt_with_proposals(proposals_per_fpn_level, gt_boxes)
        proposals, image_ids, level_ids = flatten_proposals(proposals_per_fpn_level)

        # Match proposals to GT per image (rcnn_match_anchors_to_gt with both
        # thresholds ROI_FG_IOU, i.e. (0.5, 0.5), not the RPN's) and sample
        # `batch_size_per_image` per image (not once over the batch) with the given
        # `sample_rpn_training` (foreground fraction ROI_FG_FRACTION, generator
        # self.generator). RoIAlign only the sampled proposals (self._roi_features),
        # run the head, then:
        #   loss_cls: cross-entropy over C + 1 classes (background 0, class c -> c + 1), mean over samples;
        #   loss_box: smooth-L1 (beta BOX_LOSS_BETA) between the deltas predicted
        #     for each foreground sample's GT class and its GT deltas, summed and
        #     divided by the number of samples.
        ### BEGIN SOLUTION
        matched = torch.empty(proposals.shape[0], 5, dtype=proposals.dtype, device=proposals.device)
        fg_parts, bg_parts = [], []
        for image_idx in range(images.shape[0]):
            in_image = (image_ids == image_idx).nonzero().squeeze(1)
            matched[in_image] = rcnn_match_anchors_to_gt(
                proposals[in_image], gt_boxes[image_idx], (ROI_FG_IOU, ROI_FG_IOU)
            )
            fg_idx, bg_idx = sample_rpn_training(
                matched[in_image], self.batch_size_per_image, ROI_FG_FRACTION, self.generator
            )
            fg_parts.append(in_image[fg_idx])
            bg_parts.append(in_image[bg_idx])
        fg, bg = torch.cat(fg_parts), torch.cat(bg_parts)
        idx = torch.cat([fg, bg])  # foreground first
        roi_feats = self._roi_features(feats_per_fpn_level, proposals[idx], image_ids[idx], level_ids[idx])
        features = self.roi_stem(roi_feats)  # (S, c'*S*S)
        fg_classes = matched[fg, 4].long()
        gt_classes = torch.cat([fg_classes + 1, torch.zeros_like(bg)])
        loss_cls = F.cross_entropy(self.cls_pred(features), gt_classes)
        fg_deltas = self.box_pred(features[: fg.shape[0]]).reshape(-1, self.num_classes, 4)  # (F, 4C) -> (F, C, 4)
        fg_deltas = fg_deltas[torch.arange(fg.shape[0], device=fg.device), fg_classes]  # (F, 4)
        target_deltas = rcnn_get_deltas_from_anchors(proposals[fg], matched[fg])
        loss_box = F.smooth_l1_loss(fg_deltas, target_deltas, beta=BOX_LOSS_BETA, reduction="sum")
        loss_box = loss_box / max(idx.shape[0], 1)
        ### END SOLUTION
        return {
            "loss_rpn_obj": rpn_output["loss_rpn_obj"],
            "loss_rpn_box": rpn_output["loss_rpn_box"],
            "loss_cls": loss_cls,
            "loss_box": loss_box,
        }

    def _roi_features(
        self,
        feats_per_fpn_level: dict[str, torch.Tensor],
        boxes: torch.Tensor,
        image_ids: torch.Tensor,
        level_ids: torch.Tensor,
    ) -> torch.Tensor:
        """RoIAlign every box on the FPN level it came from.

        Args:
            feats_per_fpn_level: ``{level: Tensor[B, c, H, W]}``.
            boxes: Tensor[P, 4] XYXY boxes in image pixels.
            image_ids: Tensor[P] int64, the image of each box.
            level_ids: Tensor[P] int64, position of each box's level in ``feats_per_fpn_level``.

        Returns:
            Tensor[P, c, S, S], row i pooled from box i.
        """
        # For each level call torchvision.ops.roi_align on that level's features
        # with its boxes as Tensor[K, 5] rows (image_id, x1, y1, x2, y2),
        # spatial_scale 1 / stride, aligned=True, output size self.roi_size;
        # put the results back in the rows of the boxes they came from.
        ### BEGIN SOLUTION
        first = next(iter(feats_per_fpn_level.values()))
        out = first.new_zeros(boxes.shape[0], first.shape[1], *self.roi_size)  # (P, c, S, S)
        rois = torch.cat([image_ids[:, None].to(boxes), boxes], dim=1)  # (P, 5)
        for level_id, (level, feats) in enumerate(feats_per_fpn_level.items()):
            rows = (level_ids == level_id).nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            stride = self.backbone.fpn_strides[level]
            out[rows] = roi_align(feats, rois[rows], self.roi_size, spatial_scale=1.0 / stride, aligned=True)
        return out
        ### END SOLUTION

    @torch.no_grad()
    def _inference(
        self,
        images: torch.Tensor,
        feats_per_fpn_level: dict[str, torch.Tensor],
        proposals_per_fpn_level: dict[str, list[torch.Tensor]],
        test_score_thresh: float,
        test_nms_thresh: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Detect objects in a single image.

        Returns:
            (pred_boxes Tensor[N, 4] XYXY, pred_classes Tensor[N] int64 in 0..C-1,
            pred_scores Tensor[N]) in decreasing order of score.
        """
        if images.shape[0] != 1:
            raise ValueError(f"images: eval mode takes one image at a time, got a batch of {images.shape[0]}")
        height, width = images.shape[-2:]
        proposals, image_ids, level_ids = flatten_proposals(proposals_per_fpn_level)
        roi_feats = self._roi_features(feats_per_fpn_level, proposals, image_ids, level_ids)
        # Classify every proposal: softmax over all C + 1 logits, then score and
        # class are the best probability among classes 1..C (background never
        # wins) and its index shifted to 0..C-1. Decode that class's deltas at the
        # proposal (this second stage regresses boxes: the proposals are not the
        # final boxes), clip to the image ((height, width)), keep scores above
        # test_score_thresh, and run class-specific NMS (test_nms_thresh).
        ### BEGIN SOLUTION
        features = self.roi_stem(roi_feats)
        probs = self.cls_pred(features).softmax(dim=-1)  # (P, C + 1)
        pred_scores, pred_classes = probs[:, 1:].max(dim=1)  # (P,), (P,) in 0..C-1
        deltas = self.box_pred(features).reshape(-1, self.num_classes, 4)  # (P, 4C) -> (P, C, 4)
        deltas = deltas[torch.arange(deltas.shape[0], device=deltas.device), pred_classes]  # (P, 4)
        boxes = rcnn_apply_deltas_to_anchors(deltas, proposals)
        boxes = clip_boxes_to_image(boxes, (height, width))
        keep = pred_scores > test_score_thresh
        boxes, pred_classes, pred_scores = boxes[keep], pred_classes[keep], pred_scores[keep]
        keep = class_spec_nms(boxes, pred_scores, pred_classes, test_nms_thresh)
        return boxes[keep], pred_classes[keep], pred_scores[keep]
        ### END SOLUTION
