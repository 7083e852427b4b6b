"""`python -m lpc_engine.cli ARGS` is `lpc ARGS`."""

import sys

from lpc_engine.cli.app import main

sys.exit(main())
