"""The runtime's subcommands of ``rcnn-kit``: ``train``, ``eval`` and ``demo``.

``rcnn-kit demo`` is the kit's smoke run: it writes a small synthetic shapes
dataset, trains the reference detector from random init on it, evaluates it on the
training images and on held-out ones and writes ``summary.json``, ``loss.png``,
``checkpoint.pt`` and detection pictures under ``--out``.

Every command picks the ``faster_rcnn`` package with ``--impl DIR`` (default:
``$RCNN_KIT_IMPL``, else :func:`rcnn_kit.course.default_impl_dir`: the course repository's
reference or stubs, or the student bundle's ``faster_rcnn/``).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:  # torch and the engine are imported lazily at run time so that `rcnn-kit --help` stays quick
    from torch import nn
    from torch.utils.data import Dataset

    from rcnn_kit.engine import TrainConfig, TrainResult

from rcnn_kit.course import IMAGE_SIZE, IMPL_ENV, default_impl_dir
_PRETRAINED_CHOICES = {"auto": None, "yes": True, "no": False}

#: ``demo`` defaults: 8 training images of 224 px at batch 8 for 200 iterations reach a
#: clearly non-trivial training-set mAP@0.5 from random init in a few CPU minutes.
DEMO_TRAIN_IMAGES = 8
DEMO_VAL_IMAGES = 4
DEMO_ITERS = 200
DEMO_IMAGE_SIZE = IMAGE_SIZE
#: Pictures written per split by ``eval`` and ``demo``; detections below this score are not drawn.
NUM_PICTURES = 4
PICTURE_SCORE_THRESH = 0.5


#: ``--metric`` values (``method`` of :func:`rcnn_kit.engine.mean_average_precision`), the default first.
METRIC_CHOICES = ("voc", "voc07", "coco")

#: Exit status of a command stopped by a user error (bad argument, missing file), as argparse uses.
USAGE_ERROR_EXIT = 2
#: Input sides must be multiples of the coarsest FPN stride (p5).
SIZE_MULTIPLE = 32


def _user_errors(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Report a user error (missing file, bad value) as one line on stderr and exit status 2."""

    @functools.wraps(command)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except (FileNotFoundError, ValueError) as exc:
            print(f"rcnn-kit {args.command}: error: {exc}", file=sys.stderr)
            return USAGE_ERROR_EXIT

    return wrapper


def _check_args(args: argparse.Namespace) -> None:
    """Range checks argparse cannot express; raise ValueError naming the option."""
    size = getattr(args, "image_size", None)
    if size is not None and (size <= 0 or size % SIZE_MULTIPLE):
        raise ValueError(f"--image-size: expected a positive multiple of {SIZE_MULTIPLE}, got {size}")
    for option in ("iters", "batch_size", "train_images", "val_images"):
        value = getattr(args, option, None)
        if value is not None and value <= 0:
            raise ValueError(f"--{option.replace('_', '-')}: expected a positive int, got {value}")
    if getattr(args, "num_pictures", 0) < 0:
        raise ValueError(f"--num-pictures: expected >= 0, got {args.num_pictures}")


def resolve_impl_dir(impl: str | None) -> Path:
    """The ``faster_rcnn`` folder to use: ``impl``, ``$RCNN_KIT_IMPL`` or the first default that exists.

    Raises:
        FileNotFoundError: the chosen folder does not exist (or no default does).
    """
    chosen = impl or os.environ.get(IMPL_ENV)
    if chosen:
        path = Path(chosen)
        if not path.is_dir():
            source = "--impl" if impl else f"${IMPL_ENV}"
            raise FileNotFoundError(f"{source}: {path} is not a folder holding a faster_rcnn package")
        return path
    try:
        return default_impl_dir()
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"--impl: not given and {exc}") from None


def load_impl(impl: str | None) -> ModuleType:
    """Import the ``faster_rcnn`` package chosen by :func:`resolve_impl_dir`."""
    from rcnn_kit.impl import import_faster_rcnn

    return import_faster_rcnn(resolve_impl_dir(impl))


def open_dataset(data: str | Path, split: str, image_size: int) -> tuple[Dataset, tuple[str, ...]]:
    """Dataset and class names for ``--data``: a VOC-layout folder or a course JSON file.

    Class names come from ``classes.txt`` in the folder (or beside the JSON file),
    else the 20 VOC classes. ``split`` is used for folders only.

    Raises:
        FileNotFoundError: ``data`` does not exist.
    """
    from rcnn_kit.data import VOC_CLASSES, VOCJsonDataset, VOCXmlDataset, read_class_names

    path = Path(data)
    if path.is_dir():
        names = read_class_names(path) or VOC_CLASSES
        return VOCXmlDataset(path, split=split, image_size=image_size, class_names=names), names
    if path.is_file():
        names = read_class_names(path.parent) or VOC_CLASSES
        return VOCJsonDataset(path, image_size=image_size, class_names=names), names
    raise FileNotFoundError(f"--data: {path} is neither a VOC folder nor a JSON file")


def _write_json(path: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as indented JSON (folders created); NaN becomes null."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # NaN (mAP without any GT box) is written as null so that strict JSON readers accept the file.
    clean = json.loads(json.dumps(payload, default=str), parse_constant=lambda _: None)
    path.write_text(json.dumps(clean, indent=2) + "\n", encoding="utf-8")
    return path


def _machine() -> dict[str, str]:
    """Python / torch versions and the platform, recorded in every summary."""
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform()}


def _evaluate_split(
    model: nn.Module, dataset: Dataset, names: Sequence[str], out_dir: Path, tag: str, args: argparse.Namespace
) -> dict[str, Any]:
    """Predict, score and draw a few pictures for one dataset; returns the metrics dict."""
    from rcnn_kit.engine import mean_average_precision, predict
    from rcnn_kit.visualize import save_detections

    predictions = predict(
        model, dataset, score_thresh=args.score_thresh, nms_thresh=args.nms_thresh, device=args.device
    )
    metrics = mean_average_precision(predictions, names, method=args.metric)
    for p in predictions[: args.num_pictures]:
        _, image, gt = dataset[p.index]
        keep = p.scores >= PICTURE_SCORE_THRESH
        save_detections(out_dir / f"{tag}_{p.index:04d}.png", image, p.boxes[keep], p.classes[keep],
                        p.scores[keep], names, gt_boxes=gt)
    return metrics


def _print_map_table(results: dict[str, dict[str, Any]], names: Sequence[str]) -> None:
    from rcnn_kit.engine import format_map_table

    print(format_map_table(results, names))


def _train_config(args: argparse.Namespace, out_dir: Path) -> TrainConfig:
    from rcnn_kit.engine import TrainConfig

    return TrainConfig(
        max_iters=args.iters, batch_size=args.batch_size, lr=args.lr, warmup_iters=args.warmup_iters,
        grad_clip_norm=args.clip if args.clip > 0 else None, device=args.device, seed=args.seed,
        num_workers=args.num_workers, output_dir=str(out_dir),
    )


def _train_and_save(args: argparse.Namespace, pkg: ModuleType, train_set: Dataset, names: Sequence[str],
                    pretrained: bool | None, out_dir: Path) -> tuple[nn.Module, TrainResult]:
    """Build, train and checkpoint a detector; returns ``(model, TrainResult)``."""
    from dataclasses import asdict

    from rcnn_kit.build import DetectorConfig, build_detector_from_config
    from rcnn_kit.checkpoint import save_checkpoint
    from rcnn_kit.engine import train_detector

    detector_config = DetectorConfig(num_classes=len(names), pretrained=pretrained)
    model = build_detector_from_config(pkg, detector_config)
    train_config = _train_config(args, out_dir)
    result = train_detector(model, train_set, train_config, progress=not args.quiet)
    save_checkpoint(out_dir / "checkpoint.pt", model, config=detector_config.to_dict(), iteration=result.iterations,
                    extra={"class_names": list(names), "train_config": asdict(train_config),
                           "image_size": args.image_size})
    return model, result


def _train_summary(args: argparse.Namespace, result: TrainResult, impl: Path) -> dict[str, Any]:
    """The fields that ``train`` and ``demo`` both write to their summary JSON."""
    return {
        "impl": str(impl.resolve()), "iterations": result.iterations, "batch_size": args.batch_size,
        "wall_time_s": round(result.wall_time_s, 2), "device": result.device,
        "final_losses": result.final_losses(), "machine": _machine(),
    }


@_user_errors
def cmd_train(args: argparse.Namespace) -> int:
    """``rcnn-kit train``: train on ``--data`` and write checkpoint, loss plot and summary to ``--out``."""
    _check_args(args)
    impl = resolve_impl_dir(args.impl)
    pkg = load_impl(args.impl)
    train_set, names = open_dataset(args.data, args.split, args.image_size)
    out_dir = Path(args.out)
    _, result = _train_and_save(args, pkg, train_set, names, _PRETRAINED_CHOICES[args.pretrained], out_dir)
    summary = {**_train_summary(args, result, impl), "data": str(args.data), "split": args.split}
    _write_json(out_dir / "train_summary.json", summary)
    print(f"trained {result.iterations} iterations in {result.wall_time_s:.1f} s on {result.device}; "
          f"final loss {summary['final_losses']['total']:.4f}; "
          f"wrote {out_dir}/checkpoint.pt, loss.png, train_summary.json")
    return 0


@_user_errors
def cmd_eval(args: argparse.Namespace) -> int:
    """``rcnn-kit eval``: mAP of a checkpoint on ``--data``, summary JSON and pictures under ``--out``."""
    from rcnn_kit.build import DetectorConfig, build_detector_from_config
    from rcnn_kit.checkpoint import load_checkpoint, read_checkpoint

    _check_args(args)
    pkg = load_impl(args.impl)
    payload = read_checkpoint(args.checkpoint)
    if not payload.get("config") or "class_names" not in (payload.get("extra") or {}):
        raise ValueError(
            f"--checkpoint: {args.checkpoint} has no detector config / class names (not written by rcnn-kit train?)"
        )
    config = DetectorConfig.from_dict({**payload["config"], "pretrained": False})  # weights come from the file
    model = build_detector_from_config(pkg, config)
    load_checkpoint(args.checkpoint, model)
    image_size = args.image_size or payload["extra"].get("image_size", DEMO_IMAGE_SIZE)
    dataset, names = open_dataset(args.data, args.split, image_size)
    if list(names) != list(payload["extra"]["class_names"]):
        raise ValueError(f"--data: class names {list(names)} differ from the checkpoint's "
                         f"{payload['extra']['class_names']}")
    out_dir = Path(args.out)
    metrics = _evaluate_split(model, dataset, names, out_dir, args.split, args)
    _print_map_table({args.split: metrics}, names)
    _write_json(out_dir / "eval_summary.json", {"checkpoint": str(args.checkpoint), "data": str(args.data),
                                                  "split": args.split, "metric": metrics["metric"],
                                                  "metrics": metrics, "machine": _machine()})
    return 0


@_user_errors
def cmd_demo(args: argparse.Namespace) -> int:
    """``rcnn-kit demo``: synthetic data -> train from random init -> evaluate on train and held-out images."""
    from rcnn_kit.data import SYNTHETIC_CLASSES, VOCXmlDataset, make_synthetic_voc

    _check_args(args)
    start = time.perf_counter()
    impl = resolve_impl_dir(args.impl)
    pkg = load_impl(args.impl)
    out_dir = Path(args.out)
    total = args.train_images + args.val_images
    root = make_synthetic_voc(out_dir / "data", num_images=total, image_size=args.image_size, seed=args.seed,
                              val_fraction=args.val_images / total)
    splits = {s: VOCXmlDataset(root, split=s, image_size=args.image_size, class_names=SYNTHETIC_CLASSES)
              for s in ("train", "val")}
    model, result = _train_and_save(args, pkg, splits["train"], SYNTHETIC_CLASSES, False, out_dir)
    metrics = {s: _evaluate_split(model, ds, SYNTHETIC_CLASSES, out_dir, s, args) for s, ds in splits.items()}
    summary = {**_train_summary(args, result, impl), "train_images": len(splits["train"]),
               "val_images": len(splits["val"]), "image_size": args.image_size,
               "metric": metrics["train"]["metric"], "map_50": {s: m["map_50"] for s, m in metrics.items()},
               "metrics": metrics,
               "total_wall_time_s": round(time.perf_counter() - start, 2)}
    _write_json(out_dir / "summary.json", summary)
    print(f"\ndemo: {result.iterations} iterations from random init in {result.wall_time_s:.0f} s on {result.device} "
          f"({len(splits['train'])} training / {len(splits['val'])} held-out synthetic images)")
    _print_map_table(metrics, SYNTHETIC_CLASSES)
    print("(train: the images it learned from; val: unseen images. With so few images and no pretrained "
          "weights, expect a gap between the two.)")
    print(f"wrote {out_dir}/summary.json, loss.png, checkpoint.pt and train_*/val_* pictures")
    return 0


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--impl", metavar="DIR", help=f"faster_rcnn package folder (default: ${IMPL_ENV}, else ./solutions/faster_rcnn, "
                        "./assignments/faster_rcnn or ./faster_rcnn, here or beside the kit)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_eval_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--score-thresh", type=float, default=0.05, help="detector score threshold (default: 0.05)")
    parser.add_argument("--nms-thresh", type=float, default=0.5, help="class-specific NMS IoU (default: 0.5)")
    parser.add_argument("--num-pictures", type=int, default=NUM_PICTURES, help="detection pictures to write per split")
    parser.add_argument("--metric", choices=METRIC_CHOICES, default=METRIC_CHOICES[0],
                        help="voc: VOC all-point AP (default, the course's metric); voc07: VOC2007 11-point; "
                        "coco: COCO-style 101-point AP@0.5 (needs pycocotools)")


def _add_train_options(parser: argparse.ArgumentParser, iters: int, batch_size: int) -> None:
    parser.add_argument("--iters", type=int, default=iters, help=f"training iterations (default: {iters})")
    parser.add_argument("--batch-size", type=int, default=batch_size, help=f"images per step (default: {batch_size})")
    parser.add_argument("--lr", type=float, default=0.01, help="base learning rate (default: 0.01)")
    parser.add_argument("--warmup-iters", type=int, default=50, help="linear warm-up iterations (default: 50)")
    parser.add_argument("--clip", type=float, default=10.0, help="gradient-norm clip, 0 disables (default: 10)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--num-workers", type=int, default=0, help="data-loader workers (default: 0)")


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``train``, ``eval`` and ``demo`` to the ``rcnn-kit`` parser."""
    train = subparsers.add_parser("train", help="train a detector on a VOC folder or course JSON file")
    train.add_argument("--data", required=True, help="VOC-layout folder or course JSON file")
    train.add_argument("--split", default="train", help="image set of a VOC folder (default: train)")
    train.add_argument("--out", required=True, help="output folder")
    train.add_argument("--image-size", type=int, default=DEMO_IMAGE_SIZE, help=f"square input side (default: {DEMO_IMAGE_SIZE})")
    train.add_argument("--pretrained", choices=sorted(_PRETRAINED_CHOICES), default="auto",
                       help="ImageNet trunk weights: yes, no, or auto (when available; default)")
    _add_train_options(train, iters=DEMO_ITERS, batch_size=8)
    _add_common(train)
    train.set_defaults(func=cmd_train)

    evaluate = subparsers.add_parser("eval", help="mAP@0.5 of a checkpoint (VOC all-point by default), with pictures")
    evaluate.add_argument("--checkpoint", required=True, help="checkpoint.pt written by train or demo")
    evaluate.add_argument("--data", required=True, help="VOC-layout folder or course JSON file")
    evaluate.add_argument("--split", default="val", help="image set of a VOC folder (default: val)")
    evaluate.add_argument("--out", required=True, help="output folder")
    evaluate.add_argument("--image-size", type=int, default=None, help="default: the checkpoint's training size")
    _add_eval_options(evaluate)
    _add_common(evaluate)
    evaluate.set_defaults(func=cmd_eval)

    demo = subparsers.add_parser("demo", help="train the detector on synthetic shapes from random init and evaluate")
    demo.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    demo.add_argument("--train-images", type=int, default=DEMO_TRAIN_IMAGES, help="synthetic training images")
    demo.add_argument("--val-images", type=int, default=DEMO_VAL_IMAGES, help="synthetic held-out images")
    demo.add_argument("--image-size", type=int, default=DEMO_IMAGE_SIZE, help="image side, a multiple of 32")
    _add_train_options(demo, iters=DEMO_ITERS, batch_size=DEMO_TRAIN_IMAGES)
    _add_eval_options(demo)
    _add_common(demo)
    demo.set_defaults(func=cmd_demo)
