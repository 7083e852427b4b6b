"""`lpc sweep`: the paper's ablation grid (architectures x learning rates x
seeds, section III) and where each of its runs stands.

A sweep is a folder of ordinary run directories, one per grid point, named
by the values that vary (`lpc-lr0.0001-s0`), so `lpc runs`, `lpc eval`,
`lpc report` and the TUI read it like any runs directory. Running the same
sweep again skips finished runs, resumes stopped or killed ones from their
last checkpoint, and restarts those that never saved one.
"""

from __future__ import annotations

import fcntl
import itertools
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterator

from lpc_engine.config import RunConfig, continues, leaf_fields, resumable_part
from lpc_engine.config_io import build_config, config_from_dict
from lpc_engine.errors import ConfigError, UsageError
from lpc_engine.events import Event
from lpc_engine.parallel.cores import torch_threads
from lpc_engine.presets import PRESETS
from lpc_engine.runs.store import RunStore, run_path
from lpc_engine.training.headless import last_of, train_headless
from lpc_engine.training.train import resume_config

FINAL = ("finished", "diverged")  # reruns cannot change these: deterministic on a device


@dataclass(frozen=True)
class GridPoint:
    name: str
    cfg: RunConfig


def parse_list(text: str, field_name: str) -> list[Any]:
    """'a,b,c' -> typed values of config field `field_name`."""
    leaves = leaf_fields()
    if field_name not in leaves:
        raise ConfigError(f"--set: unknown field '{field_name}'")
    kind = leaves[field_name][1].type
    kind = kind if isinstance(kind, str) else kind.__name__
    cast = {"int": int, "float": float, "bool": _bool}.get(kind, str)
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values:
        raise ConfigError(f"{field_name}: no values given")
    try:
        return [cast(v) for v in values]
    except ValueError:
        raise ConfigError(f"{field_name}: expected {kind} values, got {text!r}") from None


def _bool(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise ValueError(text)
    return text.lower() == "true"


def parse_set(spec: str) -> tuple[str, list[Any]]:
    """'field=v1,v2' -> (field, [v1, v2])."""
    field_name, sep, values = spec.partition("=")
    if not sep:
        raise ConfigError(f"--set: expected field=v1,v2, got {spec!r}")
    return field_name.strip(), parse_list(values, field_name.strip())


def expand_presets(text: str) -> list[str]:
    if text.strip().lower() == "all":
        return list(PRESETS)
    return [p.lower() for p in parse_list(text, "preset")]


def grid(axes: dict[str, list[Any]], file_values: dict[str, Any] | None,
         flags: dict[str, Any]) -> list[GridPoint]:
    """Every combination of `axes` ({field: values}) over the base flags,
    each config resolved and validated before anything runs."""
    fields = list(axes)
    points = []
    for combo in itertools.product(*(axes[f] for f in fields)):
        chosen = dict(zip(fields, combo))
        cfg = build_config(file_values, {**flags, **chosen})
        points.append(GridPoint(point_name(chosen, fields), cfg))
    names = [p.name for p in points]
    if len(set(names)) != len(names):
        raise UsageError("sweep: two grid points got the same name; give distinct values")
    return points


def point_name(chosen: dict[str, Any], fields: list[str]) -> str:
    """preset first, then lr, seed and the --set fields, e.g. lpc-lr0.0002-s1."""
    parts = []
    for f in fields:
        v = chosen[f]
        text = f"{v:g}" if isinstance(v, float) else str(v)
        parts.append(text if f == "preset" else f"lr{text}" if f == "lr" else
                     f"s{text}" if f == "seed" else f"{f}={text}")
    return "-".join(parts)


def point_state(sweep_dir: Path, point: GridPoint) -> str:
    """'new', 'done' (finished or diverged), 'resume' or 'restart'; a
    UsageError if the folder holds a run with another config."""
    store = RunStore(run_path(sweep_dir, point.name))
    if not store.exists():
        return "new"
    saved = config_from_dict(store.read_config())
    if not continues(saved, point.cfg):
        raise UsageError(f"sweep: {store.dir} holds a run with another config; "
                         "use another sweep --name or remove it")
    status = (store.read_summary() or {}).get("status")
    if status in FINAL and saved.epochs == point.cfg.epochs:
        return "done"
    return "resume" if store.latest_checkpoint() is not None else "restart"


def run_point(sweep_dir: Path, point: GridPoint, state: str,
              on_event: Callable[[Event], None] = lambda event: None, threads: int | None = None) -> str:
    """Train one grid point, whatever runs it (this process, a `--jobs`
    process, a submitit job); its final status, or "taken" when another
    sweep over the same folder holds the point, "done" when one finished it.
    `state` is point_state's, looked at again once the point is claimed. A
    resume keeps the saved run and takes what a resume may change (more
    epochs, the device, the precision) from the point's config. Ctrl-C and
    SIGTERM stop it with a checkpoint; `threads`: torch threads meanwhile."""
    with _claim(sweep_dir, point.name) as claimed:
        if not claimed:
            return "taken"
        state = point_state(sweep_dir, point)  # another sweep may have got there first
        if state == "done":
            return "done"
        run_dir = run_path(sweep_dir, point.name)
        cfg = resume_config(run_dir, **resumable_part(point.cfg)) if state == "resume" else point.cfg
        with torch_threads(threads):
            events = train_headless(cfg, run_dir, resume=state == "resume", overwrite=state == "restart")
            last = last_of(events, on_event)
    return getattr(last, "status", "error")


# A grid point's process exits with these (cli/worker.py, submitit's point_job):
# 0 finished (or done by another), 75 taken by another sweep over the folder,
# 76 stopped with a checkpoint (a request, a signal), 1 anything else.
_EXIT = {"finished": 0, "done": 0, "taken": 75, "stopped": 76}


def exit_code(status: str) -> int:
    """The exit code of a process that trained one point to `status`."""
    return _EXIT.get(status, 1)


def job_status(code: int) -> str:
    """A point process's outcome from its exit code: finished, taken, stopped or failed."""
    return {0: "finished", 75: "taken", 76: "stopped"}.get(code, "failed")


@contextmanager
def _claim(sweep_dir: Path, name: str) -> Iterator[bool]:
    """Hold SWEEP/.claims/NAME (an OS file lock) while this process trains
    the point, so that two sweeps over one folder never both create or
    resume it; False if another process holds it."""
    folder = Path(sweep_dir) / ".claims"
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / name, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
