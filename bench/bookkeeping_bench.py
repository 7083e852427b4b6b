"""What the per-epoch bookkeeping costs: the engine's epoch against the bare step loop.

Both run the same model on the same batches (same order, same augmentation);
the engine adds its on-device scalar sums (loss, CE, penalty, accuracy,
latent norms), one read-back an epoch, and the test-set evaluation. Epochs
alternate between the two so that machine noise hits both alike.

    .venv/bin/python bench/bookkeeping_bench.py [--dataset digits] [--epochs 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lpc_engine.augment import augment_batch
from lpc_engine.config_io import build_config
from lpc_engine.epoch import num_steps
from lpc_engine.objective import compute_loss, objective_for_epoch
from lpc_engine.session import open_session


def bare_epoch(s, obj) -> float:
    """Forward, backward and step on the engine's batches: nothing else."""
    began = time.perf_counter()
    s.model.train()
    perm = torch.randperm(s.data.x_train.shape[0], generator=s.generator, device=s.device)
    bs = s.cfg.data.batch_size
    for step in range(num_steps(perm.numel(), bs)):
        idx = perm[step * bs:(step + 1) * bs]
        x = augment_batch(s.data.x_train[idx], s.data.crop_padding if s.cfg.data.augment else 0,
                          s.data.flip and s.cfg.data.augment, s.generator)
        loss, _, _ = compute_loss(s.model(x), s.data.y_train[idx], obj)
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
    engine, bare = [], []
    for epoch in range(1, args.epochs + 1):
        row = s.train_epoch(epoch)
        engine.append(row.seconds)
        bare.append(bare_epoch(s, objective_for_epoch(cfg, s.preset, epoch, s.gamma(epoch))))
    e, b = statistics.median(engine[2:]), statistics.median(bare[2:])
    print(f"{args.dataset}/{cfg.model.backbone}: engine epoch {e * 1e3:.1f} ms, bare loop "
          f"{b * 1e3:.1f} ms, bookkeeping share {(e - b) / e:+.1%} of an epoch "
          f"(medians over {len(engine) - 2} epochs)")


if __name__ == "__main__":
    main()
