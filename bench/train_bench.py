"""Training throughput: the engine's loop against the compute floor and the usual recipe.

Three ways to train the same model (same architecture, same initial weights,
same fused AdamW, same loss, same batch size, same precision, memory format
and compilation), one epoch each in turn, rotating the order every repeat so
that machine noise hits all three alike; medians over the repeats after one
untimed warm-up round (allocation, compilation):

- floor:  forward, backward and optimizer step on batches already augmented
          and in memory (on the device): nothing else. No loop with data
          can beat it.
- engine: `Session.train_epoch`, the loop `lpc run` runs: the device-resident
          dataset, a batched crop/flip on the device, the on-device scalar
          sums and their one read-back an epoch (test evaluation off).
- usual:  the usual PyTorch recipe: a torchvision-style Dataset of uint8
          images turned into PIL images per item, `transforms.RandomCrop(
          padding)` + `RandomHorizontalFlip` + `ToTensor` + `Normalize` on
          the CPU, a shuffling DataLoader with worker processes, and
          `loss.item()` every step. Its workers start anew each epoch, as
          with DataLoader's defaults (no persistent_workers).

Datasets: `digits` (8x8 grayscale, 1437 training images, crop padding 1, no
flips; the digits profile's MLP and batch 32) and `cifar-synthetic` (3x32x32
uint8 images of 10 classes, prototypes plus noise, crop padding 4 and flips
as CIFAR; the small `cnn` and batch 128). Run it on an idle machine.

    .venv/bin/python bench/train_bench.py --dataset digits
    .venv/bin/python bench/train_bench.py --dataset cifar-synthetic
    python bench/train_bench.py --dataset cifar-synthetic --device cuda \\
        --backbone resnet18 --precision bf16 --samples 50000
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from lpc_engine.data.augment import augment_batch
from lpc_engine.config_io import build_config
from lpc_engine.training.epoch import num_steps
from lpc_engine.training.execution import prepare_forward
from lpc_engine.training.objective import compute_loss, objective_for_epoch
from lpc_engine.training.session import Session, _optimizer, open_session

MODES = ("floor", "engine", "usual")
DEFAULTS = {"digits": ("mlp", 32), "cifar-synthetic": ("cnn", 128)}  # backbone, batch


class ArrayImages(Dataset):
    """What torchvision.datasets.CIFAR10 does per item: a PIL image from a
    uint8 (H, W, C) array, then the transforms."""

    def __init__(self, images: np.ndarray, labels: list[int], transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        image = self.images[i]
        image = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
        return self.transform(image), self.labels[i]


def cifar_synthetic(path: Path, n_train: int, seed: int = 0) -> None:
    """Write CIFAR-shaped data as an .npz the engine reads: 10 classes of
    3x32x32 uint8 images, a smooth prototype per class plus pixel noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (10, 3, 8, 8))
    prototypes = coarse.repeat(4, axis=2).repeat(4, axis=3)  # 8x8 blobs of 4x4 pixels

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 10, n)
        x = np.clip(prototypes[y] + rng.normal(0, 40, (n, 3, 32, 32)), 0, 255).round()
        return (x / 255).astype(np.float32), y.astype(np.int64)  # pixels in [0, 1], as CIFAR's

    (x_tr, y_tr), (x_te, y_te) = split(n_train), split(512)
    np.savez(path, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)


def open_bench_session(args: argparse.Namespace, data_dir: str) -> Session:
    """The engine's session, set up as `lpc run` would (test evaluation off)."""
    backbone, batch = DEFAULTS[args.dataset]
    dataset = "digits" if args.dataset == "digits" else "npz"
    cfg = build_config(flags={
        "dataset": dataset, "data_dir": data_dir if dataset == "npz" else None,
        "backbone": args.backbone or backbone, "batch_size": args.batch_size or batch,
        "device": args.device, "precision": args.precision, "compile": args.compile,
        "epochs": 10**6, "eval_every": 10**6, "robustness_samples": 0})
    s = open_session(cfg, None, None, False)
    if dataset == "npz":  # CIFAR's augmentation (appendix C); an .npz gets none by default
        s.data = dataclasses.replace(s.data, crop_padding=4, flip=True)
    return s


def raw_images(s: Session) -> np.ndarray:
    """The training images back as uint8 (N, H, W, C), as a torchvision dataset holds them."""
    x = s.data.x_train.float().cpu()
    mean = torch.tensor(s.data.mean).view(1, -1, 1, 1)
    std = torch.tensor(s.data.std).view(1, -1, 1, 1)
    return (x * std + mean).mul(255).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


def usual_loader(s: Session, workers: int) -> DataLoader:
    x = raw_images(s)
    steps = [transforms.RandomCrop(x.shape[1], padding=s.data.crop_padding)] if s.data.crop_padding else []
    steps += [transforms.RandomHorizontalFlip()] if s.data.flip else []
    steps += [transforms.ToTensor(), transforms.Normalize(s.data.mean, s.data.std)]
    dataset = ArrayImages(x, s.data.y_train.tolist(), transforms.Compose(steps))
    return DataLoader(dataset, batch_size=s.cfg.data.batch_size, shuffle=True, num_workers=workers,
                      pin_memory=s.device.type == "cuda")


def floor_batches(s: Session) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of augmented batches, made ahead, on the device."""
    g = torch.Generator(device=s.device).manual_seed(1)
    perm = torch.randperm(s.data.x_train.shape[0], generator=g, device=s.device)
    bs, out = s.cfg.data.batch_size, []
    for step in range(num_steps(perm.numel(), bs)):
        idx = perm[step * bs:(step + 1) * bs]
        x = augment_batch(s.data.x_train[idx], s.data.crop_padding, s.data.flip, g)
        out.append((x.clone(), s.data.y_train[idx].clone()))
    return out


def step(forward, optimizer, obj, x, y) -> torch.Tensor:
    loss = compute_loss(forward(x), y, obj)[0]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Runner:
    """The three modes, each with its own copy of the same initial model."""

    def __init__(self, s: Session, args: argparse.Namespace) -> None:
        self.s, self.epoch = s, 0
        self.batches = floor_batches(s)
        self.loader = usual_loader(s, args.workers)
        self.copies = {}
        for mode in ("floor", "usual"):
            model = copy.deepcopy(s.model)
            self.copies[mode] = (model, prepare_forward(model, s.device, s.cfg.precision, s.cfg.compile),
                                 _optimizer(model, s.cfg))

    def samples(self, mode: str) -> int:
        if mode == "floor":
            return sum(len(y) for _, y in self.batches)
        return len(self.s.data.y_train)

    def run(self, mode: str, epoch: int) -> float:
        """Seconds of one epoch of `mode`."""
        s = self.s
        obj = objective_for_epoch(s.cfg, s.preset, epoch, s.gamma(epoch))
        sync(s.device)
        began = time.perf_counter()
        if mode == "engine":
            s.train_epoch(epoch)  # includes its one read-back of the epoch's sums
        else:
            model, forward, optimizer = self.copies[mode]
            model.train()
            if mode == "floor":
                for x, y in self.batches:
                    step(forward, optimizer, obj, x, y)
            else:
                total = 0.0
                for x, y in self.loader:
                    x, y = x.to(s.device, non_blocking=True), y.to(s.device, non_blocking=True)
                    total += step(forward, optimizer, obj, x, y).item()  # the usual per-step read
        sync(s.device)
        return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=tuple(DEFAULTS), default="digits")
    parser.add_argument("--backbone", default=None, help="default: mlp (digits), cnn (cifar-synthetic)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 32 (digits), 128")
    parser.add_argument("--samples", type=int, default=4096, help="cifar-synthetic training images")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--repeats", type=int, default=9, help="timed rounds (one epoch per mode each)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the usual recipe")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    print("$ " + shlex.join([os.path.relpath(sys.executable), *sys.argv]), flush=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = str(Path(tmp) / "cifar-synthetic.npz")
        if args.dataset == "cifar-synthetic":
            cifar_synthetic(Path(data_dir), args.samples)
        s = open_bench_session(args, data_dir)
        report(s, Runner(s, args), args)


def report(s: Session, runner: Runner, args: argparse.Namespace) -> None:
    seconds: dict[str, list[float]] = {m: [] for m in MODES}
    for r in range(args.repeats + 1):  # round 0: warm-up, not counted
        for mode in MODES[r % 3:] + MODES[:r % 3]:
            t = runner.run(mode, r + 1)
            if r:
                seconds[mode].append(t)
    cfg = s.cfg
    print(f"{args.dataset}: {cfg.model.backbone}, {len(s.data.y_train)} images "
          f"{'x'.join(map(str, s.data.input_shape))}, batch {cfg.data.batch_size}, {cfg.precision}"
          f"{', compiled' if cfg.compile else ''}, {s.device}, torch threads {torch.get_num_threads()}, "
          f"usual recipe with {args.workers} workers; medians of {args.repeats} epochs")
    ips = {}
    for mode in MODES:
        t = statistics.median(seconds[mode])
        ips[mode] = runner.samples(mode) / t
        spread = f"{min(seconds[mode]):.3f}-{max(seconds[mode]):.3f}"
        print(f"  {mode:<7} {t:8.3f} s/epoch ({spread})  {ips[mode]:9.0f} images/s")
    print(f"engine/floor {ips['engine'] / ips['floor']:.3f}   engine/usual {ips['engine'] / ips['usual']:.2f}x")


if __name__ == "__main__":
    main()
