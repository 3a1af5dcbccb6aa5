"""`python -m tools.bench.peers`: the side-by-side bench on its own (also `python -m tools peers`)."""

import sys

from .side_by_side import main

sys.exit(main())
