"""Datasets, preprocessing and the synthetic shapes generator of the course kit."""

from rcnn_kit.data.classes import SYNTHETIC_CLASSES, VOC_CLASSES
from rcnn_kit.data.datasets import (
    DEFAULT_IMAGE_SIZE,
    DEFAULT_MAX_BOXES,
    Record,
    VOCJsonDataset,
    VOCXmlDataset,
    make_loader,
    write_course_json,
)
from rcnn_kit.data.synthetic import make_synthetic_voc
from rcnn_kit.data.transforms import IMAGENET_MEAN, IMAGENET_STD, denormalize
from rcnn_kit.data.voc import read_class_names, split_ids

__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "DEFAULT_MAX_BOXES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SYNTHETIC_CLASSES",
    "VOC_CLASSES",
    "Record",
    "VOCJsonDataset",
    "VOCXmlDataset",
    "denormalize",
    "make_loader",
    "make_synthetic_voc",
    "read_class_names",
    "split_ids",
    "write_course_json",
]
