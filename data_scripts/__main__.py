"""``python -m data_scripts ...`` is the same as ``rcnn-kit data ...``."""

import sys

from data_scripts.cli import main

sys.exit(main())
