"""The TUI's cost: event-loop lag while a real run trains in the worker, and
the training slowdown against the same run headless.

Headless: `train()` consumed in a loop, as `lpc run` does. TUI: `LpcApp`
with the real engine, started with `s` and left on the monitor pane, whose
four charts redraw at up to 10 Hz from the worker's events. A probe task on
the app's event loop sleeps 10 ms at a time and records how late it wakes:
that lateness is what a key press waits (p50, p99). The two modes alternate
and each is repeated; the slowdown compares the median training seconds
(the sum of the epochs' wall times, set-up excluded). The app renders to
Textual's headless driver: compositing is measured, terminal output is not.
Run it on an idle machine.

    .venv/bin/python bench/tui_lag.py [--dataset digits] [--epochs 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time

import torch

from lpc_engine import build_config, train
from lpc_tui.app import LpcApp

PROBE_SECONDS = 0.010


def headless(flags: dict, runs_dir: str) -> float:
    cfg = build_config(flags=flags)
    for event in train(cfg, run_dir=f"{runs_dir}/headless"):
        last = event
    return last.summary["seconds"]


async def in_tui(flags: dict, runs_dir: str) -> tuple[float, list[float]]:
    """Training seconds and the probe's lateness samples (seconds)."""
    app = LpcApp(runs_dir=runs_dir, flags=flags)
    lags: list[float] = []

    async def probe() -> None:
        while True:
            began = time.perf_counter()
            await asyncio.sleep(PROBE_SECONDS)
            lags.append(time.perf_counter() - began - PROBE_SECONDS)

    async with app.run_test(size=(80, 24)) as pilot:
        app.set_focus(None)
        await pilot.press("s")
        task = asyncio.create_task(probe())
        while app.history.status not in ("finished", "stopped", "diverged", "error"):
            await asyncio.sleep(0.05)
        task.cancel()
    return app.history.summary["seconds"], lags


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    flags = {"dataset": args.dataset, "epochs": args.epochs, "device": "cpu"}
    print(f"{args.dataset}, {args.epochs} epochs, torch threads {torch.get_num_threads()}, "
          f"{args.repeats} repeats alternating")
    plain, ui, lags = [], [], []
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory() as runs:
            plain.append(headless(flags, runs))
        with tempfile.TemporaryDirectory() as runs:
            seconds, probe = asyncio.run(in_tui(flags, runs))
        ui.append(seconds)
        lags += probe
        print(f"  repeat {r + 1}: headless {plain[-1]:.2f} s, TUI {ui[-1]:.2f} s, "
              f"lag p99 {1e3 * percentile(probe, 0.99):.1f} ms")
    slowdown = statistics.median(ui) / statistics.median(plain) - 1
    print(f"training: headless {statistics.median(plain):.2f} s, TUI {statistics.median(ui):.2f} s "
          f"(median): slowdown {100 * slowdown:+.1f}%")
    print(f"event-loop lag over {len(lags)} probes: p50 {1e3 * percentile(lags, 0.5):.1f} ms, "
          f"p99 {1e3 * percentile(lags, 0.99):.1f} ms, max {1e3 * max(lags):.1f} ms")


if __name__ == "__main__":
    main()
