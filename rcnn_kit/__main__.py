"""``python -m rcnn_kit`` is the same as the ``rcnn-kit`` command (and says so in its usage texts)."""

import sys

from rcnn_kit.cli import MODULE_PROG, main

sys.exit(main(prog=MODULE_PROG))
