"""`python -m mutualrec.cli`: the ``mutualrec`` command (the benchmarks start servers so)."""

import sys

from mutualrec.cli import main

sys.exit(main())
