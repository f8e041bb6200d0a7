"""A small reference module exercising every kind of marker placement."""

from __future__ import annotations

import functools

import torch

### BEGIN HIDDEN
_GRADER_ONLY_SEED = 1234
### END HIDDEN

# Module-level table the student fills in.
### BEGIN SOLUTION
SCALES = (1.0, 2.0)
### END SOLUTION


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Area of XYXY boxes: Tensor[N, 4] -> Tensor[N]."""
    # Width times height; clamp negative sides to zero.
    ### BEGIN SOLUTION
    wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0)  # (N, 2)
    return wh[:, 0] * wh[:, 1]
    ### END SOLUTION


class BoxCoder:
    """Encodes boxes relative to anchors."""

    ### BEGIN SOLUTION
    clamp = 4.0
    ### END SOLUTION

    @functools.lru_cache(maxsize=None)
    def weights(self) -> tuple[float, float]:
        # Return the (centre, size) weights.
        ### BEGIN SOLUTION
        return (10.0, 5.0)
        ### END SOLUTION

    def encode(self, boxes: torch.Tensor) -> torch.Tensor:
        def centre(b: torch.Tensor) -> torch.Tensor:
            # Mean of the two corners.
            ### BEGIN SOLUTION
            return (b[:, :2] + b[:, 2:]) / 2  # (N, 2)
            ### END SOLUTION

        for _ in range(1):
            ### BEGIN HIDDEN
            assert boxes.shape[-1] == 4, "grader-only shape check"
            ### END HIDDEN
            out = centre(boxes)
        return out
