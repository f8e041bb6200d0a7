"""Faster R-CNN with FPN: the six modules students write in the course.

Modules (in the order the assignment builds them): ``iou``, ``nms``, ``anchors``,
``deltas``, ``rpn``, ``detector``. Boxes are XYXY float pixel coordinates with no
+1 convention throughout.
"""
