"""``python -m rcnn_kit`` is the same as the ``rcnn-kit`` command."""

import sys

from rcnn_kit.cli import main

sys.exit(main())
