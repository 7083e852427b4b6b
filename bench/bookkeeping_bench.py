"""What the per-epoch bookkeeping costs: the engine's epoch against the bare step loop.

Both run the same model on the same batches (same order, same augmentation);
the engine adds its on-device scalar sums (loss, CE, penalty, accuracy,
latent norms) and one read-back an epoch; the test-set evaluation, which
`eval_every` controls, is reported apart. Epochs alternate between the two
so that machine noise hits both alike. Run it on an idle machine: with the
cores oversubscribed, torch's threads spin and every figure is noise.

    .venv/bin/python bench/bookkeeping_bench.py [--dataset digits] [--epochs 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

from lpc_engine.config_io import build_config
from lpc_engine.training.epoch import _batch, num_steps, start_epoch
from lpc_engine.training.objective import compute_loss, objective_for_epoch
from lpc_engine.training.session import open_session


def bare_epoch(s, obj) -> float:
    """Forward, backward and step on batches made as the engine makes them
    (the same draws, blocks and slices): nothing else."""
    began = time.perf_counter()
    s.model.train()
    progress = start_epoch(s.data, s.generator, s.cfg.data.augment)
    bs = s.cfg.data.batch_size
    total = num_steps(progress.perm.numel(), bs)
    for progress.step in range(total):
        x, y = _batch(s.data, progress, bs, total)
        loss, _, _ = compute_loss(s.forward(x), y, obj)
        s.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        s.optimizer.step()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--backbone", default=None)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    cfg = build_config(flags={"dataset": args.dataset, "backbone": args.backbone,
                              "epochs": args.epochs, "device": "cpu"})
    s = open_session(cfg, None, None, False)
    steps, full, bare = [], [], []
    for epoch in range(1, args.epochs + 1):
        row = s.train_epoch(epoch)
        steps.append(s.data.x_train.shape[0] / row.samples_per_s)  # steps + bookkeeping
        full.append(row.seconds)  # ... + the test-set evaluation
        bare.append(bare_epoch(s, objective_for_epoch(cfg, s.preset, epoch, s.gamma(epoch))))
    t, f, b = (statistics.median(v[2:]) for v in (steps, full, bare))
    print(f"{args.dataset}/{cfg.model.backbone}: bare loop {b * 1e3:.1f} ms, engine steps "
          f"{t * 1e3:.1f} ms, engine epoch with test evaluation {f * 1e3:.1f} ms "
          f"(medians over {len(full) - 2} epochs)")
    print(f"bookkeeping share {(t - b) / t:+.1%} of the training steps; "
          f"test evaluation {(f - t) / f:.1%} of the epoch (set eval_every to thin it)")

if __name__ == "__main__":
    main()
