"""The TUI's event-loop lag over a large run store, some of its runs growing.

Builds a store of `--runs` run folders (default 500: a fifth at the top, the
rest in sweeps of 50, as `lpc sweep` lays them out), each with a real config,
`--rows` epoch rows and, for the finished ones, a summary. `--growing` of them
are written while the bench runs: a thread holds their locks (runs/lock.py)
and appends an epoch row to each every 0.1 s. The app opens on the store's
runs pane, which refreshes itself every 2 s on a worker thread, and after a
few seconds follows one growing run in the monitor (polled every 0.5 s). A
probe task on the app's event loop sleeps 20 ms at a time and records how
late it wakes, as bench/tui_lag.py does: that lateness is what a key press
waits. Prints p50, p99 and max. No pass or fail.

    .venv/bin/python bench/tui_store_lag.py [--runs 500] [--growing 10] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import threading
import time
from pathlib import Path

from textual.widgets import DataTable

from lpc_engine import build_config
from lpc_engine.config import to_dict
from lpc_engine.events import EpochEnd
from lpc_engine.runs.lock import RunLock
from lpc_tui.app import LpcApp
from tui_lag import percentile, probe  # the same probe, beside this script



def _row(epoch: int) -> str:
    e = EpochEnd(epoch=epoch, loss=0.5, ce=0.4, penalty=0.1, gamma=1.0, lr=1e-3, train_acc=0.9,
                 test_acc=0.9, latent_norm_mean=0.5, latent_norm_cov=0.1, seconds=0.05, samples_per_s=1e4)
    return json.dumps(e.to_json()) + "\n"


def build_store(root: Path, runs: int, rows: int) -> list[Path]:
    """`runs` run folders under `root`; every one but the growing ones finished."""
    config = json.dumps(to_dict(build_config(flags={"dataset": "synthetic", "epochs": rows + 100_000})))
    made = []
    for i in range(runs):
        folder = root / (f"run-{i:04d}" if i < runs // 5 else f"sweep-{i // 50}/point-{i:04d}")
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(config)
        (folder / "events.jsonl").write_text("".join(_row(e) for e in range(1, rows + 1)))
        (folder / "summary.json").write_text(json.dumps({"status": "finished", "test_acc": 0.9}))
        made.append(folder)
    return made


def grow(folders: list[Path], rows: int, stop: threading.Event) -> None:
    """Hold the folders' locks and append a row to each every 0.1 s."""
    locks = [RunLock(f) for f in folders]
    for f, lock in zip(folders, locks):
        (f / "summary.json").unlink()
        lock.acquire()
    epoch = rows
    while not stop.wait(0.1):
        epoch += 1
        for f in folders:
            with open(f / "events.jsonl", "a") as out:
                out.write(_row(epoch))
    for lock in locks:
        lock.release()


async def watch(root: Path, follow: str, seconds: float) -> list[float]:
    app = LpcApp(runs_dir=root)
    lags: list[float] = []
    async with app.run_test(size=(80, 24)) as pilot:
        app.set_focus(None)
        await pilot.press("r")
        task = asyncio.create_task(probe(lags))
        await asyncio.sleep(min(5.0, seconds / 3))
        table = app.runs.query_one(DataTable)
        table.move_cursor(row=[str(k.value) for k in table.rows].index(follow))
        await pilot.press("enter")
        await asyncio.sleep(seconds - min(5.0, seconds / 3))
        task.cancel()
        assert app.followed is not None and app.history.status == "running", app.history.status
    return lags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--growing", type=int, default=10)
    parser.add_argument("--rows", type=int, default=200, help="epoch rows in each run")
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folders = build_store(root, args.runs, args.rows)
        growing = folders[-args.growing:]
        stop = threading.Event()
        writer = threading.Thread(target=grow, args=(growing, args.rows, stop), daemon=True)
        writer.start()
        time.sleep(0.5)
        try:
            lags = asyncio.run(watch(root, growing[0].relative_to(root).as_posix(), args.seconds))
        finally:
            stop.set()
            writer.join()
    print(f"{args.runs} runs ({args.growing} growing, {args.rows} rows each), {args.seconds:g} s: "
          f"{len(lags)} probes, lag p50 {1e3 * percentile(lags, 0.5):.1f} ms, "
          f"p99 {1e3 * percentile(lags, 0.99):.1f} ms, max {1e3 * max(lags):.1f} ms")


if __name__ == "__main__":
    main()
