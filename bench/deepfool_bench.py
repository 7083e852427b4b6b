"""Batched DeepFool against the one-input-at-a-time reference, side by side.

An MLP with a linear penultimate layer is trained briefly on digits (a few
hundred AdamW steps, nothing read from disk) so that the attack is not
trivial; then both versions attack the same test inputs and the bench prints
their wall times, the speed ratio and the largest relative difference between
their ||r|| / ||x||. The two are timed alternately, `--repeats` times each, and
the median is reported. Run it on an idle machine.

    .venv/bin/python bench/deepfool_bench.py [--samples 300] [--steps 300] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from lpc_engine.data.datasets import load_data
from lpc_engine.model.network import build_model
from lpc_engine.robustness import DeepFoolResult, deepfool, deepfool_single


def train_mlp(steps: int, seed: int) -> tuple[torch.nn.Module, object]:
    """The digits MLP (latent 16) after `steps` AdamW steps of batch 128."""
    torch.manual_seed(seed)
    data = load_data("digits")
    model = build_model("mlp", "linear", data.input_shape, data.num_classes, 16)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, data.x_train.shape[0], (128,), generator=g)
        loss = F.cross_entropy(model(data.x_train[idx]).logits, data.y_train[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    return model, data


def one_at_a_time(model: torch.nn.Module, x: torch.Tensor) -> DeepFoolResult:
    """`deepfool_single` on each input, results stacked."""
    parts = [deepfool_single(model, xi) for xi in x]
    return DeepFoolResult(*(torch.cat(field) for field in zip(*parts)))


def timed(fn, *args) -> tuple[float, DeepFoolResult]:
    began = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - began, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--steps", type=int, default=300, help="AdamW steps before the attack")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, data = train_mlp(args.steps, args.seed)
    model.eval()
    x = data.x_test[:args.samples]
    with torch.no_grad():
        acc = (model(data.x_test).logits.argmax(1) == data.y_test).float().mean().item()
    deepfool(model, x[:16])  # warm-up
    batched_s, single_s = [], []
    for _ in range(args.repeats):
        tb, batched = timed(deepfool, model, x)
        ts, single = timed(one_at_a_time, model, x)
        batched_s.append(tb)
        single_s.append(ts)
    tb, ts = statistics.median(batched_s), statistics.median(single_s)
    rel = ((batched.ratio - single.ratio).abs() / single.ratio).max().item()
    print(f"model: mlp + linear head (latent 16), {args.steps} AdamW steps, test acc {acc:.3f}")
    print(f"inputs: {x.shape[0]} digits test inputs, torch threads {args.threads}, "
          f"median of {args.repeats}")
    print(f"robustness mean ||r||/||x||: batched {batched.ratio.mean():.6f}  "
          f"one-at-a-time {single.ratio.mean():.6f}")
    print(f"iterations: mean {batched.iterations.float().mean():.2f}, max {batched.iterations.max()}; "
          f"converged {batched.converged.float().mean():.3f}")
    print(f"same iterations: {bool((batched.iterations == single.iterations).all())}, "
          f"same labels: {bool((batched.label == single.label).all())}, "
          f"same adversarial labels: {bool((batched.adv_label == single.adv_label).all())}")
    print(f"batched       {tb * 1e3:9.1f} ms")
    print(f"one-at-a-time {ts * 1e3:9.1f} ms")
    print(f"speed ratio   {ts / tb:9.1f} x   (target >= 20x)")
    print(f"max relative difference in ratio: {rel:.2e}   (target <= 1e-4)")


if __name__ == "__main__":
    main()
