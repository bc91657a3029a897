"""`python -m serkit` runs the command-line interface."""

import sys

from serkit.cli import main

sys.exit(main())
