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
# The next cell holds the settings of this notebook. `DRIVE_FOLDER` is the folder
# in your Google Drive where you unpacked the assignment (the one that contains
# `faster_rcnn/` and this notebook). The sizes below are the course defaults; you
# may lower them while debugging.

# %% tags=["parameters"]
DRIVE_FOLDER = "faster_rcnn_assignment"  # folder inside "My Drive" holding faster_rcnn/ and rcnn_kit/
DATA_DIR = "data/synthetic"  # dataset folder with train.json / val.json (made below if missing)
NUM_IMAGES = 40  # synthetic images to generate (train + val)
IMAGE_SIZE = 224  # side of the square network input, a multiple of 32
OVERFIT_IMAGES = 8  # images used by the two overfit experiments
RPN_OVERFIT_ITERS = 200  # training steps of the RPN-only overfit
DETECTOR_OVERFIT_ITERS = 300  # training steps of the full-detector overfit
TRAIN_ITERS = 1000  # training steps of the final run on the whole training split
BATCH_SIZE = 8  # images per training step
DEVICE = "auto"  # "auto" (GPU when there is one), "cpu" or "cuda"
PRETRAINED = None  # ImageNet weights for the backbone: None = when available
SEED = 0  # seeds data generation and training
OUTPUT_DIR = "runs/notebook"  # loss plots and pictures go here
SUBMISSION_ZIP = "submission.zip"  # written by the last cell
NOTEBOOK_FILE = "faster_rcnn.ipynb"  # this notebook, added to the submission when found

# %% nbgrader={"grade": false, "grade_id": "setup_colab", "locked": true, "schema_version": 3, "solution": false, "task": false}
import importlib.util
import os
import subprocess
import sys

IN_COLAB = "google.colab" in sys.modules  # Colab's kernel imports it at start-up
if IN_COLAB:
    from google.colab import drive

    drive.mount("/content/drive")
    STUDENT_FOLDER = os.path.join("/content/drive/MyDrive", DRIVE_FOLDER)
    if not os.path.isdir(os.path.join(STUDENT_FOLDER, "faster_rcnn")):
        raise FileNotFoundError(
            f"DRIVE_FOLDER: {STUDENT_FOLDER} has no faster_rcnn/ folder; unzip the assignment there "
            "or change DRIVE_FOLDER in the cell above"
        )
    os.chdir(STUDENT_FOLDER)
    # Colab ships torch, torchvision, numpy, Pillow and matplotlib; install only what it lacks
    # (the pip names of these three are also their import names).
    missing = [pkg for pkg in ("torchmetrics", "pycocotools", "defusedxml") if importlib.util.find_spec(pkg) is None]
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)
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
from faster_rcnn import anchors, deltas, detector, iou, nms, rpn
from rcnn_kit.backbone import DetectorBackboneWithFPN
from rcnn_kit.build import build_detector
from rcnn_kit.checks import check, require_all
from rcnn_kit.handin import make_submission
from rcnn_kit.data import SYNTHETIC_CLASSES, VOCJsonDataset, make_synthetic_voc
from rcnn_kit.engine import TrainConfig, mean_average_precision, plot_loss_history, predict, train_detector
from rcnn_kit.visualize import draw_detections

torch.set_printoptions(precision=4, sci_mode=False)
print(f"Your package: {Path(faster_rcnn.__file__).parent}")

# %% [markdown] nbgrader={"grade": false, "grade_id": "data_md", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 1. Data
#
# We start with a small synthetic dataset: rectangles, ellipses and triangles on
# a noisy background. It is quick to make, and a correct detector learns it
# within a few hundred steps, which makes it ideal for debugging. (To work on
# PASCAL VOC later, prepare it with `python -m data_scripts --help` and point
# `DATA_DIR` at the folder with its `train.json` and `val.json`.)
#
# Every item of the dataset is `(image_path, image, gt_boxes)`: the image is a
# normalised `[3, S, S]` tensor and `gt_boxes` a `[40, 5]` tensor of rows
# `(x1, y1, x2, y2, class)`, padded with rows of `-1`.

# %% nbgrader={"grade": false, "grade_id": "data", "locked": true, "schema_version": 3, "solution": false, "task": false}
data_dir = Path(DATA_DIR)
if not (data_dir / "train.json").is_file():
    make_synthetic_voc(data_dir, num_images=NUM_IMAGES, image_size=IMAGE_SIZE, seed=SEED)
CLASS_NAMES = SYNTHETIC_CLASSES
train_set = VOCJsonDataset(data_dir / "train.json", image_size=IMAGE_SIZE, class_names=CLASS_NAMES)
val_set = VOCJsonDataset(data_dir / "val.json", image_size=IMAGE_SIZE, class_names=CLASS_NAMES)
print(f"{len(train_set)} training and {len(val_set)} validation images of {IMAGE_SIZE} px")

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
expected_p5_locations = torch.tensor([[16.0, 16.0], [48.0, 16.0], [16.0, 48.0], [48.0, 48.0]])
my_anchors = anchors.generate_fpn_anchors(locations, strides, stride_scale=2)
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
expected_iou = torch.tensor([[0.333333, 0.0, 0.0], [0.152174, 0.0625, 0.0], [0.0, 0.0, 1.0]])
my_iou = iou.iou(example_anchors, example_gt)
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

# %% nbgrader={"grade": true, "grade_id": "check_deltas", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
expected_deltas = torch.tensor(
    [
        [0.083333, 0.0, 0.405465, 0.693147],
        [0.125, -0.125, -1.386294, -1.386294],
        [0.0, 0.0, 0.0, 0.0],
    ]
)
my_deltas = deltas.rcnn_get_deltas_from_anchors(example_anchors, example_gt)
print("your deltas:\n", my_deltas, "\nexpected:\n", expected_deltas)
results = [
    check(
        "deltas from anchors to GT",
        my_deltas,
        expected_deltas,
        hint="dx = (gt_xc - anchor_xc) / anchor_w; dw = log(gt_w / anchor_w)",
    ),
    check(
        "applying the deltas gives the GT boxes back",
        deltas.rcnn_apply_deltas_to_anchors(my_deltas, example_anchors),
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
expected_matched = torch.tensor(
    [[-1e8, -1e8, -1e8, -1e8, -1e8], [-1.0, -1.0, -1.0, -1.0, -1.0], [120.0, 100.0, 200.0, 200.0, 2.0]]
)
print("matched rows:\n", matched)
require_all(
    "matching",
    [check("matched GT rows", matched, expected_matched, hint="this uses your iou(); fix IoU first")],
)

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
# `RPN`. The check runs the RPN on two random feature pyramids and verifies the
# shapes of everything it returns.

# %% nbgrader={"grade": true, "grade_id": "check_rpn_shapes", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
torch.manual_seed(SEED)
FPN_CHANNELS = 64
STEM_CHANNELS = [64, 64]
feats = {level: torch.randn(2, FPN_CHANNELS, 224 // s, 224 // s) for level, s in strides.items()}
pred_net = rpn.RPNPredictionNetwork(FPN_CHANNELS, STEM_CHANNELS, num_anchors=3)
obj_logits, box_deltas = pred_net(feats)
results = []
for level, s in strides.items():
    cells = (224 // s) ** 2
    results.append(check(f"objectness shape {level}", torch.tensor(obj_logits[level].shape), torch.tensor([2, cells * 3])))
    results.append(check(f"deltas shape {level}", torch.tensor(box_deltas[level].shape), torch.tensor([2, cells * 3, 4])))

proposal_net = rpn.RPN(FPN_CHANNELS, STEM_CHANNELS, batch_size_per_image=16)
rpn_out = proposal_net(feats, strides, padded_gt.unsqueeze(0).repeat(2, 1, 1))  # (40, 5) -> (2, 40, 5)
for name in ("loss_rpn_obj", "loss_rpn_box"):
    value = rpn_out[name]
    is_finite_scalar = value.dim() == 0 and bool(torch.isfinite(value))
    results.append(check(f"{name} is a finite scalar", torch.tensor(is_finite_scalar), torch.tensor(True), tol=0.0))
    print(f"{name} = {value.item():.4f}")
results.append(
    check(
        "one list of proposals per image",
        torch.tensor([len(v) for v in rpn_out["proposals"].values()]),
        torch.tensor([2, 2, 2]),
        tol=0.0,
        hint="proposals[level] is a list with one Tensor[K, 4] per image",
    )
)
require_all("RPN shapes", results)

# %% [markdown] nbgrader={"grade": false, "grade_id": "rpn_overfit_md", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Overfit the RPN
#
# A correct RPN can memorise a handful of images. We put the backbone and your
# RPN together and train them on a few images only: both losses should fall
# steadily. If they stay flat or explode, go back to the sampling, the loss
# targets or the deltas.

# %% nbgrader={"grade": false, "grade_id": "rpn_overfit", "locked": true, "schema_version": 3, "solution": false, "task": false}
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
    """Course training settings for a short run: warm-up over the first quarter."""
    return TrainConfig(
        max_iters=iterations,
        batch_size=min(BATCH_SIZE, OVERFIT_IMAGES),
        warmup_iters=max(1, min(50, iterations // 4)),
        device=DEVICE,
        seed=SEED,
        log_period=max(1, iterations // 10),
    )


def report_loss(history: dict[str, list[float]], what: str, png: Path) -> None:
    """Show the loss plot and say whether the total loss went down."""
    display(ShowImage(filename=str(plot_loss_history(history, png))))
    first, last = history["total"][0], sum(history["total"][-5:]) / len(history["total"][-5:])
    verdict = "PASS" if last < first else "FAIL"
    print(f"{verdict}  {what}: total loss {first:.3f} -> {last:.3f} (mean of the last 5 steps)")
    if verdict == "FAIL":
        print("      hint: with the course settings the loss falls clearly; check your losses and targets")


overfit_set = Subset(train_set, range(min(OVERFIT_IMAGES, len(train_set))))
torch.manual_seed(SEED)
rpn_model = BackboneWithRPN(
    DetectorBackboneWithFPN(FPN_CHANNELS, pretrained=PRETRAINED),
    rpn.RPN(FPN_CHANNELS, STEM_CHANNELS, batch_size_per_image=16),
)
rpn_result = train_detector(rpn_model, overfit_set, overfit_config(RPN_OVERFIT_ITERS))
report_loss(rpn_result.history, "RPN overfit", output_dir / "rpn_overfit_loss.png")

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
# Same experiment as for the RPN, now with all four losses. With the course
# settings all of them should fall well below their starting values.

# %% nbgrader={"grade": false, "grade_id": "detector_overfit", "locked": true, "schema_version": 3, "solution": false, "task": false}
torch.manual_seed(SEED)
model = build_detector(faster_rcnn, num_classes=len(CLASS_NAMES), pretrained=PRETRAINED)
overfit_result = train_detector(model, overfit_set, overfit_config(DETECTOR_OVERFIT_ITERS))
report_loss(overfit_result.history, "detector overfit", output_dir / "detector_overfit_loss.png")

# %% [markdown] nbgrader={"grade": false, "grade_id": "inference_md", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 9. Looking at the detections
#
# The overfit model should find the objects of the images it trained on. Each
# picture shows the predicted boxes with class and score, and the ground truth
# in thin white lines.

# %% nbgrader={"grade": false, "grade_id": "inference", "locked": true, "schema_version": 3, "solution": false, "task": false}
overfit_predictions = predict(model, overfit_set, score_thresh=0.5, device=DEVICE, limit=3)
for prediction in overfit_predictions:
    _, image, gt = overfit_set[prediction.index]
    display(
        draw_detections(image, prediction.boxes, prediction.classes, prediction.scores, CLASS_NAMES, gt_boxes=gt)
    )

# %% [markdown] nbgrader={"grade": false, "grade_id": "train_md", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 10. Training on the whole training split
#
# Now a real run: all training images, `TRAIN_ITERS` steps, with warm-up,
# learning-rate decay and gradient clipping (see `TrainConfig`). On a Colab GPU
# the default run takes a few minutes.

# %% nbgrader={"grade": false, "grade_id": "train", "locked": true, "schema_version": 3, "solution": false, "task": false}
torch.manual_seed(SEED)
model = build_detector(faster_rcnn, num_classes=len(CLASS_NAMES), pretrained=PRETRAINED)
train_config = TrainConfig(
    max_iters=TRAIN_ITERS,
    batch_size=BATCH_SIZE,
    warmup_iters=max(1, min(50, TRAIN_ITERS // 4)),
    device=DEVICE,
    seed=SEED,
    log_period=max(1, TRAIN_ITERS // 20),
)
train_result = train_detector(model, train_set, train_config)
print(f"{train_result.iterations} steps in {train_result.wall_time_s:.0f} s on {train_result.device}")
display(ShowImage(filename=str(plot_loss_history(train_result.history, output_dir / "train_loss.png"))))

# %% [markdown] nbgrader={"grade": false, "grade_id": "map_md", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 11. Mean average precision
#
# Finally we measure the detector on the validation images it never saw. For
# each class, the detections are sorted by score and matched to GT boxes at IoU
# 0.5; the average precision is the area under the resulting precision-recall
# curve, and mAP@0.5 is its mean over the classes.

# %% nbgrader={"grade": false, "grade_id": "map", "locked": true, "schema_version": 3, "solution": false, "task": false}
val_predictions = predict(model, val_set, device=DEVICE)
summary = mean_average_precision(val_predictions, CLASS_NAMES)
print(f"validation mAP@0.5 = {summary['map_50']:.3f} over {summary['num_images']} images")
for name, ap in summary["per_class_ap_50"].items():
    print(f"  {name:>10}: " + ("no GT box" if ap is None else f"AP@0.5 = {ap:.3f}"))

# %% [markdown] nbgrader={"grade": false, "grade_id": "submit_md", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 12. Submit
#
# Save this notebook first (File > Save). The next cell checks that all six files
# of `faster_rcnn/` are there, parse and import, and writes `submission.zip` with
# them and this notebook. Upload that zip to the autograder.

# %% nbgrader={"grade": false, "grade_id": "submit", "locked": true, "schema_version": 3, "solution": false, "task": false}
notebook_file = Path(NOTEBOOK_FILE)
zip_path = make_submission(
    STUDENT_FOLDER, SUBMISSION_ZIP, notebook=notebook_file if notebook_file.is_file() else None
)
print(f"Wrote {zip_path.resolve()}" + ("" if notebook_file.is_file() else f" (no {NOTEBOOK_FILE} found to add)"))
