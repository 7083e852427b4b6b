"""`python -m lpc_tui`: the same as `lpc-tui` (what `lpc tui` runs)."""

import sys

from .cli import main

sys.exit(main())
