"""The processes `lpc` starts to train, each through a function of the core:

    python -m lpc_engine.cli.worker run CONFIG.toml RUN_DIR new|resume|overwrite [--json]
        one process of `lpc run --nproc N` (launch.spawn): joins the group,
        trains through `train_headless`, and rank 0 reports as `lpc run` does;
    python -m lpc_engine.cli.worker point CONFIG.toml SWEEP_DIR NAME STATE
        one grid point of `lpc sweep --jobs N` (sweep_exec): `run_point`.

CONFIG.toml holds the config the parent resolved, so that every process
trains exactly what the parent's command line said, under one name even
when the name came from the clock. Errors follow `lpc`'s exit codes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lpc_engine.cli.app import guarded, train_and_report
from lpc_engine.cli.processes import stop_with_launcher
from lpc_engine.config_io import build_config, read_config_file
from lpc_engine.parallel.group import join_group, leave_group
from lpc_engine.study.sweep import GridPoint, exit_code, run_point

MODES = ("new", "resume", "overwrite")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lpc_engine.cli.worker")
    sub = parser.add_subparsers(dest="what", required=True)
    one = sub.add_parser("run")
    one.add_argument("config", type=Path)
    one.add_argument("run_dir", type=Path)
    one.add_argument("mode", choices=MODES)
    one.add_argument("--json", action="store_true")
    point = sub.add_parser("point")
    point.add_argument("config", type=Path)
    point.add_argument("sweep_dir", type=Path)
    point.add_argument("name")
    point.add_argument("state", choices=("new", "resume", "restart"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    cfg = lambda: build_config(read_config_file(args.config))  # noqa: E731  (errors inside guarded)
    if args.what == "point":
        return guarded(lambda: exit_code(run_point(args.sweep_dir, GridPoint(args.name, cfg()), args.state)))
    stop_with_launcher()
    join_group()
    try:
        return guarded(lambda: train_and_report(cfg(), args.run_dir, args.mode == "resume",
                                                args.mode == "overwrite", args.json))
    finally:
        leave_group()


if __name__ == "__main__":
    sys.exit(main())
