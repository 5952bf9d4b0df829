"""``python -m mmbalance`` is the ``mmbalance`` command."""

import sys

from mmbalance.cli import main

sys.exit(main())
