"""What a stalled tracker costs a run: the default digits run (`lpc run`'s
700 epochs) with no tracker, and with `log_to` set to a tracker whose every
call blocks for 10 s (a hung server, a full disk on a network mount).

The tracker writes from its own thread with a bounded queue
(trackers/sink.py): the run never waits for it, drops its events once the
queue is full (one alert), and does not wait for it at the end. Rounds
alternate the order of the two runs; it prints each run's training time
(the summary's seconds) and wall time (train() from its first to its last
event), and the median ratios.

    OMP_NUM_THREADS=1 .venv/bin/python bench/tracker_overhead.py --rounds 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

import lpc_engine.trackers.sink as sink_module
from lpc_engine import Alert, build_config, train

BLOCK_SECONDS = 10.0


class Stalled:
    """A tracker every call of which blocks for BLOCK_SECONDS."""

    name, location = "stalled", "nowhere"

    def write(self, batch) -> None:
        time.sleep(BLOCK_SECONDS)

    def close(self) -> None:
        time.sleep(BLOCK_SECONDS)


def one_run(log_to: str, run_dir: Path, epochs: int | None) -> tuple[float, float, int]:
    """(training seconds, wall seconds, tracker alerts) of one default digits run."""
    flags = {"device": "cpu", "log_to": log_to, **({"epochs": epochs} if epochs else {})}
    began = time.perf_counter()
    events = list(train(build_config(None, flags), run_dir=run_dir))
    wall = time.perf_counter() - began
    alerts = sum(isinstance(e, Alert) and e.code.startswith("tracker") for e in events)
    return events[-1].summary["seconds"], wall, alerts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=None, help="default: the digits profile's 700")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sink_module.open_tracker = lambda *a, **k: Stalled()  # what `log_to = "tensorboard"` opens
    ratios_train, ratios_wall = [], []
    with tempfile.TemporaryDirectory() as tmp:
        one_run("", Path(tmp) / "warm-up", 5)  # imports, allocator, the first DeepFool: untimed
        for r in range(args.rounds):
            order = ("", "tensorboard") if r % 2 == 0 else ("tensorboard", "")
            got = {log_to: one_run(log_to, Path(tmp) / f"{r}-{log_to or 'none'}", args.epochs)
                   for log_to in order}
            (t0, w0, _), (t1, w1, alerts) = got[""], got["tensorboard"]
            ratios_train.append(t1 / t0)
            ratios_wall.append(w1 / w0)
            print(f"round {r}: no tracker {t0:.1f} s training, {w0:.1f} s wall; stalled tracker "
                  f"{t1:.1f} s training, {w1:.1f} s wall, {alerts} alert(s): "
                  f"x{t1 / t0:.3f} training, x{w1 / w0:.3f} wall", flush=True)
    print(f"median over {args.rounds} rounds: stalled tracker / none = x{statistics.median(ratios_train):.3f} "
          f"training time, x{statistics.median(ratios_wall):.3f} wall time")


if __name__ == "__main__":
    main()
