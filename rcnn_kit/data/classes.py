"""Class-name lists of the datasets the course uses.

A class index in a GT row ``(x1, y1, x2, y2, class)`` is the position of the
object's name in one of these tuples (or in a dataset's ``classes.txt``).
"""

from __future__ import annotations

#: The 20 PASCAL VOC object classes, in VOC's alphabetical order.
VOC_CLASSES: tuple[str, ...] = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)

#: Classes of the synthetic shapes dataset (see :mod:`rcnn_kit.data.synthetic`).
SYNTHETIC_CLASSES: tuple[str, ...] = ("rectangle", "ellipse", "triangle")
