"""Training, evaluation and plotting for any detector that follows the course contract."""

from rcnn_kit.engine.evaluate import (
    METRIC_NAMES,
    ImagePrediction,
    coverage_recall,
    format_map_table,
    mean_average_precision,
    predict,
)
from rcnn_kit.engine.plots import plot_loss_history
from rcnn_kit.engine.train import NonFiniteLossError, TrainConfig, TrainResult, lr_factor, train_detector

__all__ = [
    "ImagePrediction",
    "METRIC_NAMES",
    "NonFiniteLossError",
    "TrainConfig",
    "TrainResult",
    "coverage_recall",
    "lr_factor",
    "format_map_table",
    "mean_average_precision",
    "plot_loss_history",
    "predict",
    "train_detector",
]
