"""``rcnn-kit data ...``: the data scripts' command line.

Sub-commands: ``voc2007``, ``voc2012``, ``overfit-subset``, ``synthetic``.
Every path and URL is a flag; the defaults work from the repository root on a
laptop (everything under ``./data``, or ``$RCNN_KIT_DATA``).

- Colab: keep the tars on Drive and extract to the fast local disk, e.g.
  ``rcnn-kit data voc2007 --download-dir /content/drive/MyDrive/voc --data-dir /content/data``
  (a second session finds the verified tars on Drive and skips the download).
- Gradescope setup step: nothing to download; the autograder bundle carries the
  overfit subset (``rcnn-kit data overfit-subset``) and checks it with
  :func:`data_scripts.overfit_subset.verify_manifest`.
- Offline mirror: ``--mirror http://host/path/`` or ``RCNN_KIT_VOC_MIRRORS`` (comma separated).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from data_scripts.download import (
    DEFAULT_VOC2007_MIRRORS,
    MIRRORS_ENV,
    VOC2007_TEST,
    VOC2007_TRAINVAL,
    DownloadError,
    fetch_from_mirrors,
    mirror_list,
)
from data_scripts.extract import safe_extract
from data_scripts.overfit_subset import DEFAULT_RULE, MAX_SUBSET_BYTES, SelectionRule, make_overfit_subset
from data_scripts.voc_json import IncompleteDataError, prepare_seeded_split, prepare_voc2007
from rcnn_kit.data.synthetic import make_synthetic_voc
from rcnn_kit.data.voc import DEFAULT_VAL_FRACTION, read_class_names

#: Default data folder; ``$RCNN_KIT_DATA`` overrides it.
DATA_ENV = "RCNN_KIT_DATA"
DEFAULT_DATA_DIR = "data"
#: Where the VOC2007 tars unpack inside the data folder.
VOC2007_SUBDIR = Path("VOCdevkit") / "VOC2007"

_DESCRIPTION = (
    "Download and prepare datasets: PASCAL VOC2007, VOC2012-style folders, "
    "the autograder's overfit subset and the synthetic shapes set."
)

#: Errors the commands report as one line and exit status 1 (they are the user's to fix).
_USER_ERRORS = (ValueError, FileNotFoundError, PermissionError, DownloadError)


def _data_dir() -> Path:
    return Path(os.environ.get(DATA_ENV, DEFAULT_DATA_DIR))


#: Logger of this package; its messages (mirror failures, resumes) go to stderr while a command runs.
_LOGGER = logging.getLogger("data_scripts")


def _run_voc2007(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir)
    download_dir = Path(args.download_dir) if args.download_dir else data_dir / "downloads"
    remotes = [VOC2007_TRAINVAL] + ([VOC2007_TEST] if args.with_test else [])
    mirrors = mirror_list(args.mirror, DEFAULT_VOC2007_MIRRORS)
    for remote in remotes:
        archive = download_dir / remote.filename
        if not args.skip_download:
            archive = fetch_from_mirrors(remote, download_dir, mirrors, progress=not args.no_progress)
        print(f"extracting {archive} into {data_dir}")
        safe_extract(archive, data_dir)
    voc_root = data_dir / VOC2007_SUBDIR
    splits = ["train", "val"] + (["test"] if args.with_test else [])
    reports = prepare_voc2007(
        voc_root, args.out_dir, splits, check_counts=not args.no_count_check, allow_dropped=args.allow_dropped
    )
    for split, report in reports.items():
        print(report.summary(f"VOC2007 {split}"))
    print(f"JSON files written to {args.out_dir or voc_root}")
    return 0


def _run_voc2012(args: argparse.Namespace) -> int:
    report = prepare_seeded_split(
        args.root, args.out_dir, val_fraction=args.val_fraction, seed=args.seed, allow_dropped=args.allow_dropped
    )
    print(report.summary(f"VOC-style folder {args.root}"))
    print(f"train.json and val.json written to {args.out_dir or args.root}")
    return 0


def _run_overfit(args: argparse.Namespace) -> int:
    ids = [i.strip() for i in args.ids.split(",") if i.strip()] if args.ids else None
    rule = SelectionRule(count=args.count, seed=args.seed, max_objects=args.max_objects, min_box_side=args.min_box_side)
    class_names = read_class_names(Path(args.classes_from)) if args.classes_from else None
    manifest = make_overfit_subset(
        args.source_json,
        args.out,
        image_root=args.image_root,
        ids=ids,
        rule=rule,
        image_size=args.image_size,
        class_names=class_names,
        max_bytes=args.max_bytes,
    )
    print(f"overfit subset of {len(manifest['ids'])} images ({manifest['total_bytes']} bytes) in {args.out}")
    print("ids: " + ",".join(manifest["ids"]))
    return 0


def _run_synthetic(args: argparse.Namespace) -> int:
    out = make_synthetic_voc(
        args.out,
        num_images=args.num_images,
        image_size=args.image_size,
        seed=args.seed,
        min_objects=args.min_objects,
        max_objects=args.max_objects,
        val_fraction=args.val_fraction,
    )
    print(f"synthetic dataset of {args.num_images} images written to {out}")
    return 0


def _guarded(run):  # noqa: ANN001, ANN202 - wraps an (args) -> int command
    """Report user errors as ``error: ...`` on stderr with exit status 1 instead of a traceback."""

    def func(args: argparse.Namespace) -> int:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        _LOGGER.addHandler(handler)
        _LOGGER.setLevel(logging.INFO)
        try:
            return run(args)
        except IncompleteDataError as exc:
            print(exc.report.summary("problems found"), file=sys.stderr)
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except _USER_ERRORS as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            _LOGGER.removeHandler(handler)

    return func


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` command and its sub-commands to the ``rcnn-kit`` parser."""
    data = subparsers.add_parser("data", help="download and prepare datasets", description=_DESCRIPTION)
    sub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    sub.required = True
    default_dir = _data_dir()

    p = sub.add_parser("voc2007", help="download VOC2007 and write train.json/val.json")
    p.add_argument(
        "--data-dir", default=default_dir, help=f"extract into this folder (default: %(default)s; ${DATA_ENV} sets it)"
    )
    p.add_argument("--download-dir", default=None, help="keep the tars here (default DATA_DIR/downloads)")
    p.add_argument("--out-dir", default=None, help="write the JSON files here (default DATA_DIR/VOCdevkit/VOC2007)")
    p.add_argument(
        "--mirror",
        action="append",
        default=[],
        metavar="URL",
        help=f"extra mirror base URL, tried first (repeatable; also ${MIRRORS_ENV}, comma separated)",
    )
    p.add_argument("--with-test", action="store_true", help="also download the test tar and write test.json")
    p.add_argument("--skip-download", action="store_true", help="use tars already in --download-dir")
    p.add_argument("--allow-dropped", action="store_true", help="write the JSON even if images had to be left out")
    p.add_argument(
        "--no-count-check",
        action="store_true",
        help="do not compare the image/box counts with the known VOC2007 ones (for modified copies)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_guarded(_run_voc2007))

    p = sub.add_parser(
        "voc2012",
        help="train.json/val.json from a VOC-style folder with a seeded 4:1 split",
    )
    p.add_argument("--root", required=True, help="folder with Annotations/ and JPEGImages/ (e.g. VOCdevkit/VOC2012)")
    p.add_argument("--out-dir", default=None, help="write the JSON files here (default ROOT)")
    p.add_argument(
        "--val-fraction", type=float, default=DEFAULT_VAL_FRACTION, help="share of images in val (default: %(default)s)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the split (default: %(default)s)")
    p.add_argument("--allow-dropped", action="store_true", help="write the JSON even if images had to be left out")
    p.set_defaults(func=_guarded(_run_voc2012))

    p = sub.add_parser("overfit-subset", help="small resized training subset with a sha256 manifest")
    p.add_argument("--source-json", required=True, help="course JSON to pick from (e.g. VOC2007 train.json)")
    p.add_argument("--image-root", default=None, help="folder of the source's image paths (default: its folder)")
    p.add_argument("--out", default=default_dir / "overfit_subset", help="output folder (default: %(default)s)")
    p.add_argument("--ids", default=None, help="comma-separated image ids (file stems); overrides the seeded rule")
    p.add_argument(
        "--count", type=int, default=DEFAULT_RULE.count, help="images picked by the seeded rule (default: %(default)s)"
    )
    p.add_argument("--seed", type=int, default=DEFAULT_RULE.seed, help="seed of the pick (default: %(default)s)")
    p.add_argument(
        "--max-objects",
        type=int,
        default=DEFAULT_RULE.max_objects,
        help="most boxes per picked image (default: %(default)s)",
    )
    p.add_argument(
        "--min-box-side",
        type=float,
        default=DEFAULT_RULE.min_box_side,
        help="smallest box side in px at --image-size (default: %(default)s)",
    )
    p.add_argument("--image-size", type=int, default=224, help="stored image side (default: %(default)s)")
    p.add_argument(
        "--classes-from", default=None, help="folder with classes.txt (default: the source's folder, else VOC)"
    )
    p.add_argument(
        "--max-bytes", type=int, default=MAX_SUBSET_BYTES, help="size budget of the subset (default: %(default)s)"
    )
    p.set_defaults(func=_guarded(_run_overfit))

    p = sub.add_parser(
        "synthetic",
        help="VOC-layout dataset of shapes on textured noise (seeded, reproducible)",
    )
    p.add_argument("--out", default=default_dir / "synthetic", help="output folder (default: %(default)s)")
    p.add_argument("--num-images", type=int, default=16, help="number of images (default: %(default)s)")
    p.add_argument("--image-size", type=int, default=224, help="image side in pixels (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of everything drawn (default: %(default)s)")
    p.add_argument("--min-objects", type=int, default=1, help="fewest shapes per image (default: %(default)s)")
    p.add_argument("--max-objects", type=int, default=3, help="most shapes per image (default: %(default)s)")
    p.add_argument(
        "--val-fraction", type=float, default=DEFAULT_VAL_FRACTION, help="share of images in val (default: %(default)s)"
    )
    p.set_defaults(func=_guarded(_run_synthetic))


def main(argv: list[str] | None = None) -> int:
    """``python -m data_scripts ARGS`` is ``rcnn-kit data ARGS``."""
    parser = argparse.ArgumentParser(prog="python -m data_scripts")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args) or 0)
