"""`python -m lpc_tui`: the same as `lpc-tui` (what `lpc tui` runs)."""

import sys

from lpc_tui.cli import main

sys.exit(main())
