"""`torchrun -m lpc_engine.launch ARGS`: kept for torchrun users; the
worker lives in `lpc_engine.cli.torchrun` (an entry point, not the core:
nothing imports this module)."""

import sys

from lpc_engine.cli.torchrun import main

if __name__ == "__main__":
    sys.exit(main())
