"""`torchrun --nproc-per-node N -m lpc_engine.launch ARGS`: `lpc run ARGS`
as one process of a group torchrun started (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR/MASTER_PORT). `lpc_engine.launch` is this module's alias; CUDA
runs take cuda:LOCAL_RANK each (distributed.py)."""

from __future__ import annotations

import sys

from lpc_engine.cli.app import main as lpc_main
from lpc_engine.parallel.group import join_group, leave_group


def main(argv: list[str] | None = None) -> int:
    join_group()
    try:
        return lpc_main(["run", *(sys.argv[1:] if argv is None else argv)])
    finally:
        leave_group()


if __name__ == "__main__":
    sys.exit(main())
