"""``rcnn-kit data ...`` (also ``python -m data_scripts ...``): the data scripts' command line.

Sub-commands: ``voc2007``, ``voc2012``, ``overfit-subset``, ``synthetic``.
Every path and URL is a flag; the defaults work from the repository root on a
laptop (everything under ``./data``, or ``$RCNN_KIT_DATA``).

- Colab: keep the tars on Drive and extract to the fast local disk, e.g.
  ``rcnn-kit data voc2007 --download-dir /content/drive/MyDrive/voc --data-dir /content/data``
  (a second session finds the verified tars on Drive and skips the download).
- An instructor's own copy: ``--tar PATH`` (a local tar, used where it is) and/or
  ``--md5 HEX`` (the md5 of a copy that is not the official tar); always verified,
  see :mod:`data_scripts.sources`.
- Gradescope setup step: nothing to download; the autograder bundle carries the
  overfit subset (``rcnn-kit data overfit-subset``) and checks it with
  :func:`data_scripts.overfit_subset.verify_manifest`.
- Offline mirror: ``--mirror http://host/path/`` or ``RCNN_KIT_VOC_MIRRORS`` (comma separated).

Problems the user can fix end in one ``error: ...`` line and exit status 2
(:data:`data_scripts.errors.EXIT_USER_ERROR`); Ctrl-C ends in one ``interrupted: ...``
line and status 130. Both say what was kept (a ``.part`` to resume, a verified tar).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from data_scripts.download import (
    DEFAULT_VOC2007_MIRRORS,
    MIRRORS_ENV,
    VOC2007_TEST,
    VOC2007_TRAINVAL,
    DownloadError,
    check_md5_hex,
    mirror_list,
)
from data_scripts.errors import EXIT_INTERRUPTED, EXIT_USER_ERROR, STORAGE_ERRNOS, is_storage_error
from data_scripts.extract import safe_extract
from data_scripts.overfit_subset import (
    DEFAULT_RULE,
    MAX_SUBSET_BYTES,
    SelectionRule,
    make_overfit_subset,
    make_overfit_subset_from_voc,
)
from data_scripts.sources import TarSource, obtain_tar
from data_scripts.synthetic_set import MARKER_NAME, write_synthetic_set
from data_scripts.voc_json import IncompleteDataError, prepare_seeded_split, prepare_voc2007
from rcnn_kit.course import IMAGE_SIZE
from rcnn_kit.data.voc import DEFAULT_VAL_FRACTION, read_class_names

#: Default data folder; ``$RCNN_KIT_DATA`` overrides it.
DATA_ENV = "RCNN_KIT_DATA"
DEFAULT_DATA_DIR = "data"
#: Where the VOC2007 tars unpack inside the data folder.
VOC2007_SUBDIR = Path("VOCdevkit") / "VOC2007"
#: ``prog`` of ``python -m data_scripts`` (its usage lines must work when typed).
PYTHON_M_PROG = "python -m data_scripts"

_DESCRIPTION = (
    "Download and prepare datasets: PASCAL VOC2007, VOC2012-style folders, "
    "the autograder's overfit subset and the synthetic shapes set."
)

_VOC2007_EPILOG = """\
Your own copy of VOC2007 (instructors): every tar is checked by md5, and a file
with an unexpected md5 is never deleted or replaced by a download.
  a local tar:              --tar PATH                  (checked against the official md5)
  a modified local tar:     --tar PATH --md5 HEX        (checked against HEX)
  your mirror of a copy:    --mirror URL --md5 HEX      (the official hosts are not tried)
  the test tar likewise:    --with-test --test-tar PATH [--test-md5 HEX]
If a download's md5 differs, the command stops, keeps the file, and says which
md5 it found: rerun with --md5 FOUND to use that file, or with --official-hosts
to download the official tar (about 450 MB). A modified copy may hold other
images than the official one: add --no-count-check.
"""

#: Errors the commands report as one line (they are the user's to fix).
_USER_ERRORS = (ValueError, FileNotFoundError, PermissionError, DownloadError)


def _data_dir() -> Path:
    return Path(os.environ.get(DATA_ENV, DEFAULT_DATA_DIR))


#: Logger of this package; its messages (mirror failures, resumes) go to stderr while a command runs.
_LOGGER = logging.getLogger("data_scripts")


def _md5_arg(value: str) -> str:
    """argparse type of ``--md5``: 32 hex digits."""
    try:
        return check_md5_hex(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _run_voc2007(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir)
    download_dir = Path(args.download_dir) if args.download_dir else data_dir / "downloads"
    sources = [TarSource(VOC2007_TRAINVAL, args.tar, args.md5)]
    if args.with_test:
        sources.append(TarSource(VOC2007_TEST, args.test_tar, args.test_md5, "--test-tar", "--test-md5"))
    elif args.test_tar or args.test_md5:
        raise ValueError("--test-tar/--test-md5: add --with-test to use the test tar")
    user_mirrors = mirror_list(args.mirror, defaults=())
    for source in sources:
        archive, md5 = obtain_tar(
            source,
            download_dir,
            user_mirrors=user_mirrors,
            official_mirrors=DEFAULT_VOC2007_MIRRORS,
            official_hosts=args.official_hosts,
            offline=args.skip_download,
            progress=not args.no_progress,
        )
        print(f"extracting {archive} (md5 {md5}) into {data_dir}")
        safe_extract(archive, data_dir, md5=md5)
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
    options = {
        "ids": ids,
        "rule": rule,
        "image_size": args.image_size,
        "class_names": class_names,
        "max_bytes": args.max_bytes,
    }
    if args.source_voc:
        manifest = make_overfit_subset_from_voc(args.source_voc, args.out, split=args.split, **options)
    else:
        manifest = make_overfit_subset(args.source_json, args.out, image_root=args.image_root, **options)
    print(f"overfit subset of {len(manifest['ids'])} images ({manifest['total_bytes']} bytes) in {args.out}")
    print("ids: " + ",".join(manifest["ids"]))
    return 0


def _run_synthetic(args: argparse.Namespace) -> int:
    out = write_synthetic_set(
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


def _guarded(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Report user errors as one ``error: ...`` line (status 2) and Ctrl-C as ``interrupted: ...`` (status 130)."""

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
            return EXIT_USER_ERROR
        except KeyboardInterrupt as exc:
            print(f"interrupted: {exc}" if str(exc) else "interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except _USER_ERRORS as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USER_ERROR
        except OSError as exc:
            if not is_storage_error(exc):
                raise
            if exc.filename is None:  # a StorageError: its message is complete
                print(f"error: {exc}", file=sys.stderr)
            else:
                print(f"error: cannot write {exc.filename}: {STORAGE_ERRNOS[exc.errno]}", file=sys.stderr)
            return EXIT_USER_ERROR
        finally:
            _LOGGER.removeHandler(handler)

    return func


def add_data_commands(parser: argparse.ArgumentParser) -> None:
    """Add the sub-commands (``voc2007``, ``voc2012``, ``overfit-subset``, ``synthetic``) to ``parser``.

    ``rcnn-kit data`` and ``python -m data_scripts`` both call this, so each prints
    usage lines that work when typed under its own name.
    """
    sub = parser.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    sub.required = True
    default_dir = _data_dir()

    p = sub.add_parser(
        "voc2007",
        help="download VOC2007 (or use your own copy) and write train.json/val.json",
        description="Get the VOC2007 tars (md5-checked, resumable), extract them and write the course JSON.",
        epilog=_VOC2007_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--data-dir", default=default_dir, help=f"extract into this folder (default: %(default)s; ${DATA_ENV} sets it)"
    )
    p.add_argument("--download-dir", default=None, help="keep the tars here (default DATA_DIR/downloads)")
    p.add_argument("--out-dir", default=None, help="write the JSON files here (default DATA_DIR/VOCdevkit/VOC2007)")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--tar", type=Path, default=None, metavar="PATH", help="use this local trainval tar instead of downloading"
    )
    where.add_argument(
        "--mirror",
        action="append",
        default=[],
        metavar="URL",
        help=f"extra mirror base URL, tried first (repeatable; also ${MIRRORS_ENV}, comma separated)",
    )
    where.add_argument(
        "--official-hosts",
        action="store_true",
        help=f"download from the official hosts only (ignores ${MIRRORS_ENV})",
    )
    where.add_argument(
        "--skip-download", action="store_true", help="never download: use the tars already in --download-dir"
    )
    p.add_argument(
        "--md5",
        type=_md5_arg,
        default=None,
        metavar="HEX",
        help="md5 of your own trainval tar when it is not the official one (it is still checked)",
    )
    p.add_argument("--with-test", action="store_true", help="also get the test tar and write test.json")
    p.add_argument("--test-tar", type=Path, default=None, metavar="PATH", help="like --tar, for the test tar")
    p.add_argument("--test-md5", type=_md5_arg, default=None, metavar="HEX", help="like --md5, for the test tar")
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
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--source-json", help="course JSON to pick from (e.g. VOC2007 train.json)")
    source.add_argument(
        "--source-voc", metavar="DIR", help="VOC-layout folder to pick from (Annotations/*.xml, JPEGImages/)"
    )
    p.add_argument("--split", default="train", help="image set of --source-voc (default: %(default)s)")
    p.add_argument("--image-root", default=None, help="folder of --source-json's image paths (default: its folder)")
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
    p.add_argument("--image-size", type=int, default=IMAGE_SIZE, help="stored image side (default: %(default)s)")
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
        description=f"Writes the synthetic set into a new or empty folder, or over its own earlier output "
        f"(marked by {MARKER_NAME}); any other non-empty folder is refused.",
    )
    p.add_argument("--out", default=default_dir / "synthetic", help="output folder (default: %(default)s)")
    p.add_argument("--num-images", type=int, default=16, help="number of images (default: %(default)s)")
    p.add_argument("--image-size", type=int, default=IMAGE_SIZE, help="image side in pixels (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of everything drawn (default: %(default)s)")
    p.add_argument("--min-objects", type=int, default=1, help="fewest shapes per image (default: %(default)s)")
    p.add_argument("--max-objects", type=int, default=3, help="most shapes per image (default: %(default)s)")
    p.add_argument(
        "--val-fraction", type=float, default=DEFAULT_VAL_FRACTION, help="share of images in val (default: %(default)s)"
    )
    p.set_defaults(func=_guarded(_run_synthetic))


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` command and its sub-commands to the ``rcnn-kit`` parser."""
    data = subparsers.add_parser("data", help="download and prepare datasets", description=_DESCRIPTION)
    add_data_commands(data)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m data_scripts``: the ``data`` sub-commands at the top level."""
    parser = argparse.ArgumentParser(prog=PYTHON_M_PROG, description=_DESCRIPTION)
    add_data_commands(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m data_scripts ARGS`` is ``rcnn-kit data ARGS``."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
