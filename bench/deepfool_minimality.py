"""How close DeepFool's perturbation is to the smallest one, per architecture.

DeepFool (Table II) walks to the nearest boundary of the *linearised*
classifier. Where the logits are far from linear in the input, its answer can
be far from the smallest perturbation that flips the label, in either
direction. For each run this prints, over the same test inputs (the predicted
label attacked, no clipping, normalised input space, as DeepFool does):

- deepfool:    mean ||r|| / ||x|| of DeepFool (the Table II number);
- converged:   the fraction of inputs DeepFool flipped, and its mean iterations;
- along r:     the smallest t * ||r|| / ||x|| along DeepFool's own direction
               that flips the label (bisection on t in [0, 1]);
- pgd:         the smallest eps (bisection) at which a 40-step L2 PGD on the
               cross-entropy of the predicted label flips it, over ||x||: an
               upper bound on the true minimum found by another route.

    python bench/deepfool_minimality.py RUN_DIR [RUN_DIR ...] [--samples 200]

A run whose pgd is much smaller than its deepfool has a DeepFool number that
overstates its robustness. No pass or fail: it prints what it measured.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from lpc_engine import load_run
from lpc_engine.robustness import deepfool


def _flips(model, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).logits.argmax(dim=1) != label


def _unit(v: torch.Tensor) -> torch.Tensor:
    flat = v.flatten(1)
    return (flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-30)).view_as(v)


def smallest_along(model, x, label, r, steps: int = 30) -> torch.Tensor:
    """Per input, the smallest t in [0, 1] with x + t r flipped (1 if even t = 1 is not)."""
    lo, hi = torch.zeros(len(x)), torch.ones(len(x))
    for _ in range(steps):
        mid = (lo + hi) / 2
        flipped = _flips(model, x + mid.view(-1, *[1] * (x.dim() - 1)) * r, label)
        hi, lo = torch.where(flipped, mid, hi), torch.where(flipped, lo, mid)
    return hi


def pgd_flips(model, x, label, eps: torch.Tensor, iters: int = 40) -> torch.Tensor:
    """L2 PGD in the ball of radius eps (per input) on the CE of `label`: flipped?"""
    shape = [-1, *[1] * (x.dim() - 1)]
    delta = torch.zeros_like(x)
    step = (2.5 * eps / iters).view(shape)
    flipped = torch.zeros(len(x), dtype=torch.bool)
    for _ in range(iters):
        delta.requires_grad_(True)
        logits = model(x + delta).logits
        flipped |= (logits.argmax(dim=1) != label).detach()
        (grad,) = torch.autograd.grad(F.cross_entropy(logits, label, reduction="sum"), delta)
        delta = delta.detach() + step * _unit(grad)
        norm = delta.flatten(1).norm(dim=1).clamp_min(1e-30)
        delta = delta * (eps / norm).clamp(max=1.0).view(shape)
    return flipped | _flips(model, x + delta, label)


def smallest_pgd(model, x, label, upper: torch.Tensor, steps: int = 14) -> torch.Tensor:
    """Per input, the smallest eps in [0, 2 upper] at which PGD flips the label (bisection)."""
    lo, hi = torch.zeros(len(x)), 2 * upper
    for _ in range(steps):
        mid = (lo + hi) / 2
        flipped = pgd_flips(model, x, label, mid)
        hi, lo = torch.where(flipped, mid, hi), torch.where(flipped, lo, mid)
    return hi


def measure(run_dir: Path, samples: int) -> dict[str, float]:
    run = load_run(run_dir)
    for p in run.model.parameters():
        p.requires_grad_(False)
    x = run.x_test[:samples]
    res = deepfool(run.model, x)
    x_norm = x.flatten(1).norm(dim=1)
    r_norm = res.perturbation.flatten(1).norm(dim=1)
    t = smallest_along(run.model, x, res.label, res.perturbation)
    eps = smallest_pgd(run.model, x, res.label, r_norm)
    return {"deepfool": float(res.ratio.mean()), "converged": float(res.converged.float().mean()),
            "iterations": float(res.iterations.float().mean()),
            "along_r": float((t * r_norm / x_norm).mean()), "pgd": float((eps / x_norm).mean()),
            "pgd_over_deepfool": float((eps / r_norm).median())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{'run':<16} {'deepfool':>9} {'conv.':>6} {'iters':>6} {'along r':>8} {'pgd':>8} "
          f"{'pgd/df (median)':>15}")
    for run_dir in args.runs:
        m = measure(run_dir, args.samples)
        print(f"{run_dir.name:<16} {m['deepfool']:>9.4f} {m['converged']:>6.2f} {m['iterations']:>6.2f} "
              f"{m['along_r']:>8.4f} {m['pgd']:>8.4f} {m['pgd_over_deepfool']:>15.3f}")


if __name__ == "__main__":
    main()
