"""`python -m fastbptt.cli`: the `fastbptt` command."""

import sys

from . import main

sys.exit(main())
