"""`python -m uvhost` runs the command line."""

import sys

from uvhost.cli import main

sys.exit(main())
