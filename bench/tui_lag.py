"""The TUI's cost: event-loop lag while a real run trains in the worker, and
the training slowdown against the same run headless.

Headless: `train()` consumed in a loop, as `lpc run` does. TUI: `LpcApp`
with the real engine, started with `s` and left on the monitor pane, whose
four charts redraw from the worker's events (paced, see screens/monitor.py).
A probe task on the app's event loop sleeps 20 ms at a time and records how
late it wakes: that lateness is what a key press waits (p50, p99). The two
modes alternate and are repeated, with the same torch threads (the TUI's
choice, `runner.threads_beside_ui`: all cores but one). The slowdown is
given twice: on the median epoch (the steady state a long run sees) and on
the sum of the epochs (which also carries the app's one-off layout work as
the monitor pane opens). The app renders to Textual's headless driver:
compositing is measured, writing to a terminal is not. Run it on an idle
machine.

    .venv/bin/python bench/tui_lag.py [--dataset digits] [--epochs 100] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time

import torch

from lpc_engine import EpochEnd, build_config, train
from lpc_engine.training.runner import threads_beside_ui
from lpc_tui.app import LpcApp

PROBE_SECONDS = 0.020


async def probe(lags: list[float]) -> None:
    """Sleep PROBE_SECONDS at a time on the event loop, appending how late each wake-up is."""
    while True:
        began = time.perf_counter()
        await asyncio.sleep(PROBE_SECONDS)
        lags.append(time.perf_counter() - began - PROBE_SECONDS)


def headless(flags: dict, runs_dir: str) -> list[float]:
    """Each epoch's wall seconds."""
    cfg = build_config(flags=flags)
    return [e.seconds for e in train(cfg, run_dir=f"{runs_dir}/headless") if isinstance(e, EpochEnd)]


async def in_tui(flags: dict, runs_dir: str) -> tuple[list[float], list[float]]:
    """Each epoch's wall seconds, and the probe's lateness samples (seconds)."""
    app = LpcApp(runs_dir=runs_dir, flags=flags)
    lags: list[float] = []
    async with app.run_test(size=(80, 24)) as pilot:
        app.set_focus(None)
        await pilot.press("s")
        task = asyncio.create_task(probe(lags))
        while app.history.status not in ("finished", "stopped", "diverged", "error"):
            await asyncio.sleep(0.05)
        task.cancel()
    return [r["seconds"] for r in app.history.rows], lags


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=threads_beside_ui(),
                        help="torch threads of both modes (default: the TUI's, all cores but one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    flags = {"dataset": args.dataset, "epochs": args.epochs, "device": "cpu"}
    print(f"{args.dataset}, {args.epochs} epochs, torch threads {args.threads}, "
          f"{args.repeats} repeats alternating")
    plain, ui, lags = [], [], []
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory() as runs:
            plain.append(headless(flags, runs))
        with tempfile.TemporaryDirectory() as runs:
            epochs, probe = asyncio.run(in_tui(flags, runs))
        ui.append(epochs)
        lags += probe
        print(f"  repeat {r + 1}: headless {sum(plain[-1]):.2f} s, TUI {sum(ui[-1]):.2f} s, "
              f"lag p99 {1e3 * percentile(probe, 0.99):.1f} ms")
    for what, reduce in (("median epoch", statistics.median), ("all epochs", sum)):
        a = statistics.median(reduce(x) for x in plain)
        b = statistics.median(reduce(x) for x in ui)
        print(f"{what}: headless {a:.4g} s, TUI {b:.4g} s: slowdown {100 * (b / a - 1):+.1f}%")
    print(f"event-loop lag over {len(lags)} probes: p50 {1e3 * percentile(lags, 0.5):.1f} ms, "
          f"p99 {1e3 * percentile(lags, 0.99):.1f} ms, max {1e3 * max(lags):.1f} ms")


if __name__ == "__main__":
    main()
