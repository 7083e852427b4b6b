"""Throughput of one run on 1, 2, ... processes (`lpc run --nproc N`).

Each process count trains the same run (same config, same global batch)
through the real command, one after another; the figure is the median
training images/s of the epochs after the first (the `samples_per_s` of
`events.jsonl`: training steps only, not the test evaluation), and the
ratios are against one process. On the CPU, N processes share the cores
(cores / N torch threads each); on GPUs each process takes one GPU.

    .venv/bin/python bench/ddp_bench.py --dataset digits --nprocs 1,2
    python bench/ddp_bench.py --dataset cifar-synthetic --samples 50000 --device cuda \\
        --backbone resnet18 --precision bf16 --nprocs 1,2,4,8 --epochs 4
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from train_bench import cifar_synthetic  # the CIFAR-shaped .npz of the throughput bench


def run_flags(args: argparse.Namespace, tmp: Path) -> list[str]:
    flags = ["--device", args.device, "--epochs", str(args.epochs), "--metrics-every", "0",
             "--robustness-samples", "0", "--precision", args.precision]
    if args.dataset == "digits":
        flags += ["--dataset", "digits"]
    else:
        data = tmp / "cifar-synthetic.npz"
        if not data.exists():
            cifar_synthetic(data, args.samples)
        flags += ["--dataset", "npz", "--data-dir", str(data), "--backbone", args.backbone or "cnn"]
    if args.backbone and args.dataset == "digits":
        flags += ["--backbone", args.backbone]
    if args.batch_size:
        flags += ["--batch-size", str(args.batch_size)]
    return flags


def images_per_second(nproc: int, flags: list[str], tmp: Path) -> float:
    """Median training images/s of epochs 2.. of a fresh run on `nproc` processes."""
    name = f"n{nproc}"
    command = [sys.executable, "-m", "lpc_engine.cli", "run", *flags, "--runs-dir", str(tmp),
               "--name", name, "--nproc", str(nproc), "--json", "--overwrite"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{shlex.join(command)} failed:\n{done.stderr[-2000:]}")
    rows = [json.loads(line) for line in (tmp / name / "events.jsonl").read_text().splitlines()]
    speeds = [r["samples_per_s"] for r in rows if r.get("event") == "epoch" and r["epoch"] > 1]
    return statistics.median(speeds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("digits", "cifar-synthetic"), default="digits")
    parser.add_argument("--samples", type=int, default=5000, help="cifar-synthetic training images")
    parser.add_argument("--backbone", default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--nprocs", default="1,2", help="process counts, comma-separated")
    args = parser.parse_args()
    counts = [int(n) for n in args.nprocs.split(",")]
    print("$ python bench/ddp_bench.py " + shlex.join(sys.argv[1:]))
    print(f"{os.cpu_count()} cores; {args.dataset}, {args.device}, {args.precision}, "
          f"{args.epochs} epochs a count, median of epochs 2..{args.epochs}")
    with tempfile.TemporaryDirectory(prefix="ddp-bench-") as tmp:
        flags = run_flags(args, Path(tmp))
        speeds = {n: images_per_second(n, flags, Path(tmp)) for n in counts}
    base = speeds[counts[0]]
    for n, speed in speeds.items():
        print(f"nproc {n}: {speed:10.0f} images/s   x{speed / base:.2f} of nproc {counts[0]}"
              f"   efficiency {speed / base / (n / counts[0]):.2f}")


if __name__ == "__main__":
    main()
