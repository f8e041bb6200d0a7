# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown] nbgrader={"grade": false, "grade_id": "intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# # Faster R-CNN with a feature pyramid
#
# In this assignment you build a two-stage object detector piece by piece. The
# backbone (a RegNet with a small feature pyramid), the data pipeline, the
# training loop and the evaluation are given; you write the geometry and the two
# detection stages in the six files of the `faster_rcnn/` folder next to this
# notebook:
#
# | file | what you write |
# |------|----------------|
# | `anchors.py` | the centres of the feature-map cells and the anchor boxes on them |
# | `iou.py` | intersection over union of two sets of boxes |
# | `deltas.py` | the box-regression targets and their inverse |
# | `nms.py` | greedy non-maximum suppression |
# | `rpn.py` | the Region Proposal Network: predictions, proposals and losses |
# | `detector.py` | the second stage: RoI features, classification, box refinement, inference |
#
# Each file has `TODO` blocks that raise `NotImplementedError` until you fill
# them in. The comments directly above a TODO tell you what to do; the docstrings
# give the exact shapes and formats that the autograder expects. Boxes are always
# `(x1, y1, x2, y2)` in pixels.
#
# Work through the notebook from top to bottom. After each part a check cell
# prints `PASS` or `FAIL` for every test, with a hint when something is off.
# Edit the `.py` files, not the check cells: the notebook reloads your code
# automatically.

# %% [markdown] nbgrader={"grade": false, "grade_id": "setup_md", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 0. Setup
#
# The next cell holds the settings of this notebook. `DATASET` chooses the data:
# `"synthetic"` (shapes made here in seconds, no download: the default) or
# `"voc2007"` (PASCAL VOC 2007, the course's dataset: about 450 MB, and its
# training wants a GPU). `DRIVE_FOLDER` is the folder of your Google Drive that
# holds this notebook, `faster_rcnn/` and `rcnn_kit/` (the assignment zip unpacks
# into a folder of that name). The other values are the course defaults; you may
# lower the sizes while debugging.

# %% tags=["parameters"]
DATASET = "synthetic"  # "synthetic" (offline, minutes) or "voc2007" (the course's data; use a GPU)
DRIVE_FOLDER = "faster_rcnn_assignment"  # folder in "My Drive" holding this notebook, faster_rcnn/ and rcnn_kit/
VOC_TARS_FOLDER = "voc_tars"  # Colab: folder in "My Drive" that keeps the VOC tars between sessions
DATA_ROOT = None  # datasets go here; None: /content/data in Colab (the fast local disk), else ./data
IMAGE_SIZE = 224  # side of the square network input, a multiple of 32
SYNTHETIC_IMAGES = 40  # synthetic images to generate (train + val)
OVERFIT_IMAGES = 8  # synthetic training images of the two overfit experiments
RPN_OVERFIT_ITERS = 200  # training steps of the RPN-only overfit
DETECTOR_OVERFIT_ITERS = 300  # training steps of the full-detector overfit
RPN_OVERFIT_MIN_RECALL = 0.6  # the RPN overfit passes when its best proposals find this share of the objects
DETECTOR_OVERFIT_MIN_MAP = 0.7  # the detector overfit passes at this training mAP@0.5
TRAIN_ITERS = None  # steps of the final training; None: the course schedule of DATASET (section 10)
BATCH_SIZE = None  # images per step of the final training; None: the course schedule of DATASET
DEVICE = "auto"  # "auto" (GPU when there is one), "cpu" or "cuda"
PRETRAINED = None  # ImageNet weights for the backbone: None = when available, True, False
SEED = 0  # seeds data generation and training
NUM_PICTURES = 4  # validation images drawn with their detections after the final training
OUTPUT_DIR = "runs/notebook"  # loss plots and pictures go here
SUBMISSION_ZIP = "submission.zip"  # written by the last cell
NOTEBOOK_FILE = "faster_rcnn.ipynb"  # this notebook, added to the submission when found

# %% nbgrader={"grade": false, "grade_id": "setup_colab", "locked": true, "schema_version": 3, "solution": false, "task": false}
import os
import subprocess
import sys
import time

SESSION_START = time.time()  # the submission cell checks that the notebook was saved after this
IN_COLAB = "google.colab" in sys.modules  # Colab's kernel imports it at start-up
DRIVE_ROOT = "/content/drive/MyDrive"
if IN_COLAB:
    from google.colab import drive

    drive.mount("/content/drive")
    STUDENT_FOLDER = os.path.join(DRIVE_ROOT, DRIVE_FOLDER)
    if not os.path.isdir(os.path.join(STUDENT_FOLDER, "faster_rcnn")):
        raise FileNotFoundError(
            f"DRIVE_FOLDER: {STUDENT_FOLDER} has no faster_rcnn/ folder; upload the unzipped assignment "
            "folder to My Drive, or change DRIVE_FOLDER in the cell above"
        )
    os.chdir(STUDENT_FOLDER)
    # Colab ships torch, torchvision, numpy, Pillow and matplotlib; requirements.txt lists what it lacks.
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", "requirements.txt"], check=True)
else:
    STUDENT_FOLDER = os.getcwd()  # run Jupyter from the folder holding faster_rcnn/
if STUDENT_FOLDER not in sys.path:
    sys.path.insert(0, STUDENT_FOLDER)

# Reload your edited .py files automatically before every cell.
from IPython import get_ipython

_ipython = get_ipython()
if _ipython is not None:
    _ipython.run_line_magic("load_ext", "autoreload")
    _ipython.run_line_magic("autoreload", "2")
print(f"Working in {STUDENT_FOLDER} (Colab: {IN_COLAB})")

# %% nbgrader={"grade": false, "grade_id": "gpu_check", "locked": true, "schema_version": 3, "solution": false, "task": false}
import torch

if torch.cuda.is_available():
    print(f"GPU found: {torch.cuda.get_device_name(0)}")
else:
    print(
        "No GPU in this runtime: everything still works on the CPU, but training is much slower.\n"
        "In Colab choose Runtime > Change runtime type > T4 GPU, then run the notebook again."
    )

# %% nbgrader={"grade": false, "grade_id": "imports", "locked": true, "schema_version": 3, "solution": false, "task": false}
from pathlib import Path

import torchvision
from IPython.display import Image as ShowImage
from IPython.display import display
from torch import nn
from torch.utils.data import Subset

import faster_rcnn
from data_scripts.cli import main as data_command
from faster_rcnn import anchors, deltas, detector, iou, nms, rpn
from rcnn_kit.backbone import DetectorBackboneWithFPN
from rcnn_kit.build import build_detector
from rcnn_kit.checks import check, check_at_least, require_all, rpn_top_proposals, seed_conv_weights_
from rcnn_kit.commands import open_dataset
from rcnn_kit.data import make_synthetic_voc
from rcnn_kit.engine import (
    TrainConfig,
    format_map_table,
    mean_average_precision,
    plot_loss_history,
    coverage_recall,
    predict,
    train_detector,
)
from rcnn_kit.handin import find_submission_problems, notebook_location_warnings, write_submission_zip
from rcnn_kit.unfinished import find_unfinished, format_unfinished
from rcnn_kit.visualize import draw_detections

torch.set_printoptions(precision=4, sci_mode=False)
print(f"Your package: {Path(faster_rcnn.__file__).parent}")

# %% [markdown] nbgrader={"grade": false, "grade_id": "data_md", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 1. Data
#
# Two datasets, in the same format:
#
# - **Synthetic shapes** (always made, in seconds): rectangles, ellipses and
#   triangles on a noisy background. A correct detector learns them within a few
#   hundred steps, which makes them ideal for debugging: the two overfit
#   experiments below always use them.
# - **PASCAL VOC 2007** (`DATASET = "voc2007"`): 20 classes of real objects, 2501
#   training and 2510 validation images. The next cell downloads it once with the
#   kit's data helper (the same as `python -m data_scripts voc2007 ...` in a shell).
#   In Colab the tars stay in `My Drive/<VOC_TARS_FOLDER>` so that later sessions
#   skip the download; they are extracted to the Colab machine's own disk
#   (`/content/data`), which reads images far faster than Drive.
#
# The class names come from the dataset itself (its `classes.txt`, else the 20
# VOC classes). Every item is `(image_path, image, gt_boxes)`: the image is a
# normalised `[3, S, S]` tensor and `gt_boxes` a `[40, 5]` tensor of rows
# `(x1, y1, x2, y2, class)`, padded with rows of `-1`.

# %% nbgrader={"grade": false, "grade_id": "data", "locked": true, "schema_version": 3, "solution": false, "task": false}
data_root = Path(DATA_ROOT) if DATA_ROOT else Path("/content/data" if IN_COLAB else "data")
synthetic_dir = data_root / "synthetic"
if not (synthetic_dir / "train.json").is_file():
    make_synthetic_voc(synthetic_dir, num_images=SYNTHETIC_IMAGES, image_size=IMAGE_SIZE, seed=SEED)

if DATASET == "synthetic":
    data_dir = synthetic_dir
elif DATASET == "voc2007":
    data_dir = data_root / "VOCdevkit" / "VOC2007"  # where the data helper writes train.json and val.json
    if not (data_dir / "train.json").is_file():
        tars = Path(DRIVE_ROOT) / VOC_TARS_FOLDER if IN_COLAB else data_root / "downloads"
        arguments = ["voc2007", "--download-dir", str(tars), "--data-dir", str(data_root)]
        print("python -m data_scripts " + " ".join(arguments))
        if data_command(arguments) != 0:
            raise RuntimeError("preparing VOC 2007 failed; the lines above say why")
else:
    raise ValueError(f"DATASET: expected 'synthetic' or 'voc2007', got {DATASET!r}")

train_set, CLASS_NAMES = open_dataset(data_dir / "train.json", "train", IMAGE_SIZE)
val_set, _ = open_dataset(data_dir / "val.json", "val", IMAGE_SIZE)
synthetic_train, SYNTHETIC_NAMES = open_dataset(synthetic_dir / "train.json", "train", IMAGE_SIZE)
print(f"{DATASET}: {len(train_set)} training and {len(val_set)} validation images of {IMAGE_SIZE} px")
print(f"{len(CLASS_NAMES)} classes: {', '.join(CLASS_NAMES)}")

output_dir = Path(OUTPUT_DIR)
output_dir.mkdir(parents=True, exist_ok=True)
for index in range(min(3, len(train_set))):
    _, image, gt = train_set[index]
    real = gt[:, 4] >= 0  # drop the padding rows
    display(draw_detections(image, gt[real, :4], gt[real, 4].long(), None, CLASS_NAMES))

# %% [markdown] nbgrader={"grade": false, "grade_id": "anchors_md", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 2. Anchors (`anchors.py`)
#
# The backbone gives three feature maps: `p3`, `p4` and `p5`, with strides of 8,
# 16 and 32 pixels. Every cell of a feature map looks at a patch of the image
# centred on `((x + 0.5) * stride, (y + 0.5) * stride)`.
#
# 1. Implement `get_fpn_location_coords`: the `(xc, yc)` centre of every cell of
#    every level, in row-major order.
# 2. Implement `generate_fpn_anchors`: at every centre, one box per aspect ratio,
#    with area `(stride_scale * stride) ** 2` and `height / width = ratio`.
#
# The check below uses a 2 x 2 `p5` map with `stride_scale = 2` and prints your
# anchors beside the expected ones.

# %% nbgrader={"grade": true, "grade_id": "check_anchors", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
shapes = {"p3": (2, 64, 4, 4), "p4": (2, 64, 2, 2), "p5": (2, 64, 2, 2)}
strides = {"p3": 8, "p4": 16, "p5": 32}
locations = anchors.get_fpn_location_coords(shapes, strides)
# sanity value: locations["p5"]
expected_p5_locations = torch.tensor([[16.0, 16.0], [48.0, 16.0], [16.0, 48.0], [48.0, 48.0]])
my_anchors = anchors.generate_fpn_anchors(locations, strides, stride_scale=2)
# sanity value: my_anchors["p5"]
expected_p5_anchors = torch.tensor(
    [
        [-29.254834, -6.627417, 61.254834, 38.627417],
        [-16.0, -16.0, 48.0, 48.0],
        [-6.627417, -29.254834, 38.627417, 61.254834],
        [2.745166, -6.627417, 93.254834, 38.627417],
        [16.0, -16.0, 80.0, 48.0],
        [25.372583, -29.254834, 70.627417, 61.254834],
        [-29.254834, 25.372583, 61.254834, 70.627417],
        [-16.0, 16.0, 48.0, 80.0],
        [-6.627417, 2.745166, 38.627417, 93.254834],
        [2.745166, 25.372583, 93.254834, 70.627417],
        [16.0, 16.0, 80.0, 80.0],
        [25.372583, 2.745166, 70.627417, 93.254834],
    ]
)
print(f"{'your p5 anchors (x1, y1, x2, y2)':<39}| expected")
for mine_row, expected_row in zip(my_anchors["p5"].tolist(), expected_p5_anchors.tolist()):
    print(" ".join(f"{v:9.4f}" for v in mine_row), "|", " ".join(f"{v:9.4f}" for v in expected_row))
results = [
    check("p3 has 16 locations", torch.tensor(locations["p3"].shape), torch.tensor([16, 2]), hint="H*W rows of (xc, yc)"),
    check(
        "p5 locations",
        locations["p5"],
        expected_p5_locations,
        hint="centres are (x + 0.5) * stride; x varies fastest (row-major order)",
    ),
    check(
        "p5 anchors",
        my_anchors["p5"],
        expected_p5_anchors,
        hint="area = (stride_scale * stride)**2, width = sqrt(area / ratio), height = area / width; "
        "keep the A anchors of one location together",
    ),
]
require_all("anchors", results)

# %% [markdown] nbgrader={"grade": false, "grade_id": "iou_md", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 3. Intersection over union (`iou.py`)
#
# IoU measures how well two boxes agree: the area they share divided by the area
# they cover together. `iou(boxes1, boxes2)` returns the `[M, N]` matrix of every
# pair. Use broadcasting, not Python loops: the RPN calls it on thousands of
# anchors. The check compares your result with hand-picked boxes and with
# torchvision's `box_iou` on random boxes.

# %% nbgrader={"grade": true, "grade_id": "check_iou", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
example_anchors = torch.tensor([[20.0, 40.0, 80.0, 90.0], [10.0, 10.0, 50.0, 50.0], [120.0, 100.0, 200.0, 200.0]])
example_gt = torch.tensor([[10.0, 15.0, 100.0, 115.0], [30.0, 20.0, 40.0, 30.0], [120.0, 100.0, 200.0, 200.0]])
my_iou = iou.iou(example_anchors, example_gt)
# sanity value: my_iou
expected_iou = torch.tensor([[0.333333, 0.0, 0.0], [0.152174, 0.0625, 0.0], [0.0, 0.0, 1.0]])
print("your IoU:\n", my_iou, "\nexpected:\n", expected_iou)

generator = torch.Generator().manual_seed(0)
corners = torch.rand(50, 2, generator=generator) * 100
random_boxes = torch.cat([corners, corners + 1 + torch.rand(50, 2, generator=generator) * 60], dim=1)  # (50, 4)
results = [
    check("IoU of the example boxes", my_iou, expected_iou, hint="intersection / (area1 + area2 - intersection)"),
    check(
        "IoU of 50 random boxes vs torchvision",
        iou.iou(random_boxes[:20], random_boxes[20:]),
        torchvision.ops.box_iou(random_boxes[:20], random_boxes[20:]),
        hint="clamp negative intersection widths and heights to zero",
    ),
]
require_all("IoU", results)

# %% [markdown] nbgrader={"grade": false, "grade_id": "deltas_md", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 4. Box deltas (`deltas.py`)
#
# The network does not predict boxes directly but how to move and stretch an
# anchor into a box: `(dx, dy, dw, dh)`, where the centre shift is measured in
# anchor widths and heights and the size change is a log ratio.
#
# 1. `rcnn_get_deltas_from_anchors(anchors, gt_boxes)`: the deltas that turn each
#    anchor into its GT box (the training targets).
# 2. `rcnn_apply_deltas_to_anchors(deltas, anchors)`: the inverse, used at
#    inference. Applying the deltas you computed must give back the GT boxes.
#
# Anchors without a target get deltas of exactly `-1e8` (`IGNORED_DELTA`), so the
# losses can skip them: background anchors (matched to a row of `-1`) and neutral
# ones (matched to a row of `-1e8`). The check has one row of each.

# %% nbgrader={"grade": true, "grade_id": "check_deltas", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Two more anchors: one matched to background (a GT row of -1), one neutral (a GT row of -1e8).
delta_anchors = torch.cat([example_anchors, torch.tensor([[100.0, 100.0, 200.0, 200.0], [30.0, 30.0, 90.0, 120.0]])])
delta_gt = torch.cat([example_gt, torch.full((1, 4), -1.0), torch.full((1, 4), -1e8)])  # (5, 4)
my_deltas = deltas.rcnn_get_deltas_from_anchors(delta_anchors, delta_gt)
# sanity value: my_deltas[:3]
expected_deltas = torch.tensor(
    [
        [0.083333, 0.0, 0.405465, 0.693147],
        [0.125, -0.125, -1.386294, -1.386294],
        [0.0, 0.0, 0.0, 0.0],
    ]
)
print("your deltas:\n", my_deltas, "\nexpected:\n", torch.cat([expected_deltas, torch.full((2, 4), -1e8)]))
results = [
    check(
        "deltas from anchors to GT",
        my_deltas[:3],
        expected_deltas,
        hint="dx = (gt_xc - anchor_xc) / anchor_w; dw = log(gt_w / anchor_w)",
    ),
    check(
        "background row (GT all -1) gives deltas of -1e8",
        my_deltas[3],
        torch.full((4,), -1e8),
        hint="set every row whose GT coordinates are all -1 to -1e8 (IGNORED_DELTA)",
    ),
    check(
        "neutral row (GT all -1e8) gives deltas of -1e8",
        my_deltas[4],
        torch.full((4,), -1e8),
        hint="set every row whose GT coordinates are all -1e8 to -1e8 too (and compute no log of them)",
    ),
    check(
        "applying the deltas gives the GT boxes back",
        deltas.rcnn_apply_deltas_to_anchors(my_deltas[:3], example_anchors),
        example_gt,
        hint="invert each formula: xc = anchor_xc + dx * anchor_w, w = anchor_w * exp(dw)",
    ),
]
require_all("deltas", results)

# %% [markdown] nbgrader={"grade": false, "grade_id": "nms_md", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 5. Non-maximum suppression (`nms.py`)
#
# A detector fires many overlapping boxes on one object. Greedy NMS keeps the
# highest-scoring box, drops every remaining box that overlaps it by more than
# `iou_threshold`, and repeats. Return the indices of the kept boxes in
# decreasing score order. The check compares with `torchvision.ops.nms`.

# %% nbgrader={"grade": true, "grade_id": "check_nms", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
generator = torch.Generator().manual_seed(1)
corners = torch.rand(200, 2, generator=generator) * 150
nms_boxes = torch.cat([corners, corners + 10 + torch.rand(200, 2, generator=generator) * 50], dim=1)  # (200, 4)
nms_scores = torch.rand(200, generator=generator)
results = []
for threshold in (0.3, 0.5, 0.7):
    mine = nms.nms(nms_boxes, nms_scores, iou_threshold=threshold)
    expected = torchvision.ops.nms(nms_boxes, nms_scores, threshold)
    results.append(
        check(
            f"NMS at IoU {threshold}: kept indices",
            mine,
            expected,
            tol=0.0,
            hint="sort by score, keep the best, drop boxes with IoU > threshold, repeat; return int64 indices",
        )
    )
require_all("NMS", results)

# %% [markdown] nbgrader={"grade": false, "grade_id": "matching_md", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 6. Matching anchors to ground truth (given)
#
# To train the RPN every anchor needs a label. `rpn.rcnn_match_anchors_to_gt`
# (already written, and built on your `iou`) gives each anchor the GT box it
# overlaps most: IoU at or above the high threshold makes it foreground (the row
# is that GT box), at or below the low threshold background (a row of `-1`),
# and anything in between is neutral (`-1e8`) and is not trained on. Read the
# function in `rpn.py`, then check the example: the first anchor is neutral, the
# second background and the third foreground.

# %% nbgrader={"grade": true, "grade_id": "check_matching", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
gt_with_classes = torch.cat([example_gt, torch.tensor([[0.0], [1.0], [2.0]])], dim=1)  # (3, 5)
padded_gt = torch.cat([gt_with_classes, torch.full((37, 5), -1.0)])  # (40, 5), padding rows of -1
matched = rpn.rcnn_match_anchors_to_gt(example_anchors, padded_gt, (0.3, 0.6))
# sanity value: matched
expected_matched = torch.tensor(
    [[-1e8, -1e8, -1e8, -1e8, -1e8], [-1.0, -1.0, -1.0, -1.0, -1.0], [120.0, 100.0, 200.0, 200.0, 2.0]]
)
print("matched rows:\n", matched)
require_all(
    "matching",
    [check("matched GT rows", matched, expected_matched, hint="this uses your iou(); fix IoU first")],
)

# %% [markdown] nbgrader={"grade": false, "grade_id": "anchor_picture_md", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Anchors on a real training image
#
# The next cell puts your anchors on the first training image (the course's
# anchors: side `8 * stride`, so 64, 128 and 256 px, three aspect ratios each) and
# matches them to its GT boxes. For every GT box (thin white) it draws the anchor
# that overlaps it most, labelled with that IoU, and says how many anchors became
# foreground for it. A GT box with no foreground anchor (best IoU below 0.6) can
# never be proposed by the RPN from a well-placed anchor: small objects are the
# usual case, which is one reason the second stage also trains on the GT boxes
# themselves.

# %% nbgrader={"grade": false, "grade_id": "anchor_picture", "locked": true, "schema_version": 3, "solution": false, "task": false}
ANCHOR_STRIDE_SCALE = 8  # anchor side = 8 * stride, the RPN's default
_, image, gt = train_set[0]
gt_real = gt[gt[:, 4] >= 0]  # (G, 5) without the padding rows
feature_shapes = {level: (1, 1, IMAGE_SIZE // s, IMAGE_SIZE // s) for level, s in strides.items()}
image_anchors = anchors.generate_fpn_anchors(
    anchors.get_fpn_location_coords(feature_shapes, strides), strides, stride_scale=ANCHOR_STRIDE_SCALE
)
anchor_levels = [level for level, boxes in image_anchors.items() for _ in range(boxes.shape[0])]
all_anchors = torch.cat(list(image_anchors.values()))  # (R, 4) over p3, p4, p5
matched = rpn.rcnn_match_anchors_to_gt(all_anchors, gt, (0.3, 0.6))  # (R, 5)
overlaps = iou.iou(all_anchors, gt_real[:, :4])  # (R, G)
best_iou, best_anchor = overlaps.max(dim=0)  # (G,), (G,)
for g, row in enumerate(gt_real):
    foreground = int((matched[:, :4] == row[:4]).all(dim=1).sum())
    name = CLASS_NAMES[int(row[4])]
    where = f"{name} at {[round(v) for v in row[:4].tolist()]}"
    anchor_text = f"best anchor: {anchor_levels[int(best_anchor[g])]}, IoU {best_iou[g]:.2f}"
    if foreground:
        print(f"{where}: {foreground} foreground anchor(s); {anchor_text}")
    else:
        print(f"{where}: no foreground anchor ({anchor_text} < 0.6)")
display(draw_detections(image, all_anchors[best_anchor], gt_real[:, 4].long(), best_iou, CLASS_NAMES, gt_boxes=gt))

# %% [markdown] nbgrader={"grade": false, "grade_id": "rpn_md", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 7. The Region Proposal Network (`rpn.py`)
#
# The RPN slides a small convolutional network over every FPN level. At each
# location and for each of the A anchors it predicts an objectness logit and four
# deltas. During training it matches anchors to GT boxes, samples a balanced
# batch of foreground and background anchors, and computes a binary
# cross-entropy loss on objectness and an L1 loss on the deltas of foreground
# anchors. It also turns the best-scoring anchors into proposals with your
# deltas and NMS.
#
# Implement `RPNPredictionNetwork` (its layers and `forward`) and the TODOs of
# `RPN`. The check runs the RPN on two random feature pyramids: it verifies the
# shapes of everything it returns, then compares both losses with the values of
# the reference solution. To make them comparable, the check gives your
# prediction network fixed weights (`seed_conv_weights_`) and the sampling a
# fixed generator; one GT box is exactly the 128 x 128 anchor of `p4` centred at
# (120, 120), so some anchors are foreground and the box loss is not zero.

# %% nbgrader={"grade": true, "grade_id": "check_rpn", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
CHECK_SEED = 0  # fixed: the expected losses below are computed with it (by `rcnn-kit release`)
FPN_CHANNELS = 64
STEM_CHANNELS = [64, 64]
generator = torch.Generator().manual_seed(CHECK_SEED)
feats = {level: torch.randn(2, FPN_CHANNELS, 224 // s, 224 // s, generator=generator) for level, s in strides.items()}
pred_net = rpn.RPNPredictionNetwork(FPN_CHANNELS, STEM_CHANNELS, num_anchors=3)
obj_logits, box_deltas = pred_net(feats)
results = []
for level, s in strides.items():
    cells = (224 // s) ** 2
    results.append(check(f"objectness shape {level}", torch.tensor(obj_logits[level].shape), torch.tensor([2, cells * 3])))
    results.append(check(f"deltas shape {level}", torch.tensor(box_deltas[level].shape), torch.tensor([2, cells * 3, 4])))

foreground_gt = torch.tensor([[56.0, 56.0, 184.0, 184.0, 1.0]])  # the 1:1 p4 anchor at (120, 120): IoU 1
rpn_gt = torch.cat([gt_with_classes, foreground_gt, torch.full((36, 5), -1.0)])  # (40, 5), padding rows of -1
proposal_net = rpn.RPN(FPN_CHANNELS, STEM_CHANNELS, batch_size_per_image=16)
head = proposal_net.pred_net
seed_conv_weights_([head.stem_rpn, head.pred_obj, head.pred_box], seed=CHECK_SEED, std=0.1)
proposal_net.generator = torch.Generator().manual_seed(CHECK_SEED)
rpn_out = proposal_net(feats, strides, rpn_gt.unsqueeze(0).repeat(2, 1, 1))  # (40, 5) -> (2, 40, 5)
# sanity value: {name: rpn_out[name].item() for name in ("loss_rpn_obj", "loss_rpn_box")}
expected_rpn_losses = {"loss_rpn_obj": 0.874935, "loss_rpn_box": 4.266268}
loss_hints = {
    "loss_rpn_obj": "BCE with logits: target 1 for sampled foreground, 0 for sampled background anchors; "
    "sum, then divide by batch_size_per_image * B",
    "loss_rpn_box": "L1 between predicted and GT deltas of the sampled foreground anchors only; "
    "sum, then divide by batch_size_per_image * B; check the flattening order of the predictions",
}
for name, expected in expected_rpn_losses.items():
    value = rpn_out[name]
    is_finite_scalar = value.dim() == 0 and bool(torch.isfinite(value))
    results.append(check(f"{name} is a finite scalar", torch.tensor(is_finite_scalar), torch.tensor(True), tol=0.0))
    print(f"{name} = {value.item():.6f} (expected {expected:.6f})")
    results.append(check(f"{name} value", value.reshape(()), torch.tensor(expected), tol=1e-4, hint=loss_hints[name]))
results.append(
    check(
        "one list of proposals per image",
        torch.tensor([len(v) for v in rpn_out["proposals"].values()]),
        torch.tensor([2, 2, 2]),
        tol=0.0,
        hint="proposals[level] is a list with one Tensor[K, 4] per image",
    )
)
require_all("RPN", results)

# %% [markdown] nbgrader={"grade": false, "grade_id": "rpn_overfit_md", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Overfit the RPN
#
# A correct RPN can memorise a handful of images. We put the backbone and your
# RPN together and train them on `OVERFIT_IMAGES` synthetic images only, then ask
# whether its best proposals (the first five of each level, by objectness) now
# cover the objects of those images: the share of GT boxes that one of them
# overlaps with IoU >= 0.5. With the defaults the reference RPN scores 0.83 here
# after training and 0.22 before (a few objects are too small for any anchor). If the check
# fails, go back to the sampling, the loss targets or the deltas; the loss plot
# shows whether training went anywhere.

# %% nbgrader={"grade": false, "grade_id": "rpn_overfit", "locked": true, "schema_version": 3, "solution": false, "task": false}
RPN_TOP_K = 5  # proposals per level judged by the check


class BackboneWithRPN(nn.Module):
    """The backbone followed by the RPN, returning only the RPN losses (for training)."""

    def __init__(self, backbone: nn.Module, proposal_net: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.rpn = proposal_net

    def forward(self, images: torch.Tensor, gt_boxes: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.backbone(images)  # {level: Tensor[B, C, H, W]}
        out = self.rpn(feats, self.backbone.fpn_strides, gt_boxes)
        return {name: value for name, value in out.items() if name.startswith("loss")}


def overfit_config(iterations: int) -> TrainConfig:
    """Course training settings for a short run on the overfit images: warm-up over the first quarter."""
    return TrainConfig(
        max_iters=iterations,
        batch_size=len(overfit_set),
        warmup_iters=max(1, min(50, iterations // 4)),
        device=DEVICE,
        seed=SEED,
        log_period=max(1, iterations // 10),
    )


overfit_set = Subset(synthetic_train, range(min(OVERFIT_IMAGES, len(synthetic_train))))
torch.manual_seed(SEED)
rpn_model = BackboneWithRPN(
    DetectorBackboneWithFPN(FPN_CHANNELS, pretrained=PRETRAINED),
    rpn.RPN(FPN_CHANNELS, STEM_CHANNELS, batch_size_per_image=16),
)
rpn_result = train_detector(rpn_model, overfit_set, overfit_config(RPN_OVERFIT_ITERS))
display(ShowImage(filename=str(plot_loss_history(rpn_result.history, output_dir / "rpn_overfit_loss.png"))))
top_proposals = rpn_top_proposals(rpn_model.backbone, rpn_model.rpn, overfit_set, RPN_TOP_K, device=DEVICE)
require_all(
    "RPN overfit",
    [
        check_at_least(
            f"coverage@0.5 of the RPN's top {RPN_TOP_K} proposals per level on the {len(overfit_set)} overfit images",
            coverage_recall(top_proposals),
            RPN_OVERFIT_MIN_RECALL,
            hint="objectness targets (1 = foreground), the deltas the box loss compares, and the proposal "
            "order (top-k by objectness, decode, clip, NMS, top-k)",
        )
    ],
)
for prediction in top_proposals[:2]:  # the best proposals on two overfit images
    _, image, gt = overfit_set[prediction.index]
    display(draw_detections(image, prediction.boxes, prediction.classes, None, ["proposal"], gt_boxes=gt))

# %% [markdown] nbgrader={"grade": false, "grade_id": "detector_md", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 8. The full Faster R-CNN (`detector.py`)
#
# The second stage takes the RPN's proposals, crops a fixed-size feature patch
# for each with RoI Align, and predicts a class (one of C or background) and
# class-specific box deltas. During training, proposals are matched to GT boxes
# (the GT boxes themselves are added as proposals), a batch is sampled, and a
# cross-entropy loss and an L1 box loss are added to the RPN's losses. At
# inference the best proposals are refined, scored and filtered with
# class-specific NMS.
#
# Implement the TODOs of `FasterRCNN`. The check builds the detector and runs
# one training step and one inference.

# %% nbgrader={"grade": true, "grade_id": "check_detector", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
torch.manual_seed(SEED)
model = build_detector(faster_rcnn, num_classes=len(CLASS_NAMES), pretrained=PRETRAINED)
_, image, gt = train_set[0]
losses = model(image.unsqueeze(0), gt.unsqueeze(0))  # (3, S, S) -> (1, 3, S, S)
print({name: round(value.item(), 4) for name, value in losses.items()})
results = [
    check(
        "training returns the four losses",
        torch.tensor(sorted(losses) == ["loss_box", "loss_cls", "loss_rpn_box", "loss_rpn_obj"]),
        torch.tensor(True),
        tol=0.0,
        hint="return {'loss_rpn_obj', 'loss_rpn_box', 'loss_cls', 'loss_box'}",
    ),
    check(
        "every loss is a finite scalar",
        torch.tensor([v.dim() == 0 and bool(torch.isfinite(v)) for v in losses.values()]),
        torch.ones(len(losses), dtype=torch.bool),
        tol=0.0,
    ),
]
model.eval()
with torch.no_grad():
    boxes, classes, scores = model(image.unsqueeze(0), test_score_thresh=0.0, test_nms_thresh=0.5)
model.train()
print(f"inference: {boxes.shape[0]} detections")
results += [
    check("inference boxes are Tensor[N, 4]", torch.tensor(boxes.shape[1:]), torch.tensor([4]), tol=0.0),
    check(
        "one class and one score per box",
        torch.tensor([classes.shape[0], scores.shape[0]]),
        torch.tensor([boxes.shape[0], boxes.shape[0]]),
        tol=0.0,
    ),
]
require_all("Faster R-CNN", results)

# %% [markdown] nbgrader={"grade": false, "grade_id": "detector_overfit_md", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Overfit the detector
#
# Same experiment as for the RPN, now with all four losses: after training on
# the overfit images, the detector must find the objects of those same images.
# The check computes its training-set mAP@0.5 there (and prints the matched recall:
# the share of GT boxes a detection of the right class was matched to, one to one,
# with IoU >= 0.5).
# A falling loss alone is not enough: a detector can lower its losses and still
# put its boxes in the wrong place. With the defaults the reference reaches 1.0
# here (0.01 before training).

# %% nbgrader={"grade": false, "grade_id": "detector_overfit", "locked": true, "schema_version": 3, "solution": false, "task": false}
torch.manual_seed(SEED)
model = build_detector(faster_rcnn, num_classes=len(SYNTHETIC_NAMES), pretrained=PRETRAINED)
overfit_result = train_detector(model, overfit_set, overfit_config(DETECTOR_OVERFIT_ITERS))
display(ShowImage(filename=str(plot_loss_history(overfit_result.history, output_dir / "detector_overfit_loss.png"))))
overfit_predictions = predict(model, overfit_set, device=DEVICE)
overfit_summary = mean_average_precision(overfit_predictions, SYNTHETIC_NAMES)
metric_name = overfit_summary["metric"]
print(f"matched recall@0.5 on the overfit images: {overfit_summary['recall_50']:.3f}")
require_all(
    "detector overfit",
    [
        check_at_least(
            f"training {metric_name} on the {len(overfit_set)} overfit images",
            overfit_summary["map_50"],
            DETECTOR_OVERFIT_MIN_MAP,
            hint="if the RPN overfit passed, look at the second stage: the class targets (0 is background), "
            "the box targets of the sampled foreground proposals, and the decoding at inference",
        )
    ],
)

# %% [markdown] nbgrader={"grade": false, "grade_id": "inference_md", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 9. Looking at the detections
#
# The overfit model should find the objects of the images it trained on. Each
# picture shows the predicted boxes with class and score, and the ground truth
# in thin white lines.

# %% nbgrader={"grade": false, "grade_id": "inference", "locked": true, "schema_version": 3, "solution": false, "task": false}
for prediction in predict(model, overfit_set, score_thresh=0.5, device=DEVICE, limit=3):
    _, image, gt = overfit_set[prediction.index]
    display(
        draw_detections(image, prediction.boxes, prediction.classes, prediction.scores, SYNTHETIC_NAMES, gt_boxes=gt)
    )

# %% [markdown] nbgrader={"grade": false, "grade_id": "train_md", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 10. Training on the whole training split
#
# Now a real run on `DATASET`, with the course's detector and schedule: 128 FPN
# channels, stems of two 128-channel layers, 500 proposals per level before NMS and
# 200 after it; SGD with learning rate 0.01 after a linear warm-up, divided by 10 at
# 60 % and 90 % of the steps, with gradient clipping (see `TrainConfig`). On VOC the
# course trained 9000 steps of 16 images; the synthetic shapes need far fewer.
# `TRAIN_ITERS` and `BATCH_SIZE` override the schedule. The backbone starts from
# ImageNet weights when they can be downloaded (`PRETRAINED = None`).

# %% nbgrader={"grade": false, "grade_id": "train", "locked": true, "schema_version": 3, "solution": false, "task": false}
COURSE_SCHEDULES = {"voc2007": {"iters": 9000, "batch_size": 16}, "synthetic": {"iters": 500, "batch_size": 8}}
COURSE_DETECTOR = {
    "fpn_channels": 128,
    "stem_channels": (128, 128),
    "batch_size_per_image": 32,
    "rpn_batch_size_per_image": 16,
    "pre_nms_topk": 500,
    "post_nms_topk": 200,
}
schedule = COURSE_SCHEDULES[DATASET]
train_iters = TRAIN_ITERS or schedule["iters"]
batch_size = BATCH_SIZE or schedule["batch_size"]
torch.manual_seed(SEED)
model = build_detector(faster_rcnn, num_classes=len(CLASS_NAMES), pretrained=PRETRAINED, **COURSE_DETECTOR)
train_config = TrainConfig(
    max_iters=train_iters,
    batch_size=batch_size,
    lr=0.01,
    warmup_iters=max(1, min(50, train_iters // 4)),
    device=DEVICE,
    seed=SEED,
    num_workers=2 if IN_COLAB else 0,
    log_period=max(1, train_iters // 20),
)
train_result = train_detector(model, train_set, train_config)
print(f"{train_result.iterations} steps of {batch_size} images in {train_result.wall_time_s:.0f} s on {train_result.device}")
display(ShowImage(filename=str(plot_loss_history(train_result.history, output_dir / "train_loss.png"))))

# %% [markdown] nbgrader={"grade": false, "grade_id": "map_md", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 11. Validation: detections and mean average precision
#
# Finally we look at the detector on validation images it never saw, then
# measure it on all of them. For each class, the detections are sorted by score
# and matched to GT boxes at IoU 0.5; the average precision (AP) is the area under
# the resulting precision-recall curve, and mAP is its mean over the classes.
# The table names the metric it computed (VOC all-point AP, the course's) and gives
# the matched recall: the share of GT boxes (difficult ones aside) that a detection of
# the right class was matched to, one to one, with IoU >= 0.5.

# %% nbgrader={"grade": false, "grade_id": "map", "locked": true, "schema_version": 3, "solution": false, "task": false}
val_predictions = predict(model, val_set, device=DEVICE)
for prediction in val_predictions[:NUM_PICTURES]:
    _, image, gt = val_set[prediction.index]
    keep = prediction.scores >= 0.5  # draw the confident detections only
    display(
        draw_detections(
            image, prediction.boxes[keep], prediction.classes[keep], prediction.scores[keep], CLASS_NAMES, gt_boxes=gt
        )
    )
summary = mean_average_precision(val_predictions, CLASS_NAMES)
print(f"{DATASET} validation: {summary['metric']} over {len(val_predictions)} images")
print(format_map_table({"val": summary}, CLASS_NAMES))

# %% [markdown] nbgrader={"grade": false, "grade_id": "submit_md", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 12. Submit
#
# Save this notebook first (File > Save). The next cell checks that all six files
# of `faster_rcnn/` are there, parse and import, lists every function that still
# raises `NotImplementedError`, and writes `submission.zip` with the package and
# this notebook. Upload that zip to the autograder.
#
# It only warns about unfinished functions (a notebook cannot ask you a question
# reliably): a partial submission still earns the points of the parts that work.
# It also warns when the notebook it would submit looks stale or misplaced: the
# notebook you run must be `faster_rcnn.ipynb` in your assignment folder. Colab's
# "Save a copy in Drive" makes "Copy of faster_rcnn.ipynb" in "My Drive/Colab
# Notebooks" instead; move that file into the folder and rename it.

# %% nbgrader={"grade": false, "grade_id": "submit", "locked": true, "schema_version": 3, "solution": false, "task": false}
problems = find_submission_problems(STUDENT_FOLDER)
if problems:
    raise RuntimeError("cannot submit yet:\n  - " + "\n  - ".join(problems))
unfinished = find_unfinished(STUDENT_FOLDER)
if unfinished:
    print("!" * 80 + "\nWARNING: " + format_unfinished(unfinished) + "\nSubmitting anyway.\n" + "!" * 80)
copy_folders = [DRIVE_ROOT, os.path.join(DRIVE_ROOT, "Colab Notebooks")] if IN_COLAB else []
for warning in notebook_location_warnings(STUDENT_FOLDER, copy_folders, session_start=SESSION_START):
    print(f"WARNING: {warning}")
notebook_file = Path(STUDENT_FOLDER) / NOTEBOOK_FILE
zip_path = write_submission_zip(
    STUDENT_FOLDER, SUBMISSION_ZIP, notebook=notebook_file if notebook_file.is_file() else None
)
print(f"Wrote {zip_path.resolve()}" + ("" if notebook_file.is_file() else f" (no {NOTEBOOK_FILE} found to add)"))
