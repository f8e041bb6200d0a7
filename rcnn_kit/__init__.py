"""rcnn_kit: the runtime package of the Faster R-CNN course kit.

Given code that students use beside their own ``faster_rcnn`` package: the
backbone with FPN, datasets, the training loop, evaluation, visualisation and
the ``rcnn-kit`` command line. It never imports the reference, the release tool,
the autograder or the data scripts (see docs/ARCHITECTURE.md).
"""

__version__ = "0.1.0"
