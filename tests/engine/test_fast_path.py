"""The fast path: `precision` and `compile` in the config, a bf16 run on the
CPU, a compiled run whose checkpoint keeps plain keys, changing either on
resume, channels_last only on CUDA, denormals flushed in torch's OpenMP
workers too, and batches sliced from blocks augmented at once (the same
batches wherever a block begins, so a mid-epoch resume stays exact).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch._dynamo.eval_frame import OptimizedModule

import lpc_engine.data.datasets as data_module
import lpc_engine.training.epoch as epoch_module
from lpc_engine import Control, EpochEnd, build_config, load_run, train
from lpc_engine.data.augment import apply_crops
from lpc_engine.config import RunConfig, leaf_fields, to_dict
from lpc_engine.config_io import config_from_dict, dumps_toml
from lpc_engine.errors import ConfigError, UsageError
from lpc_engine.training.execution import flush_denormals, prepare_forward
from lpc_engine.model.network import build_model
from lpc_engine.training.session import open_session
from lpc_engine.runs.store import RunStore, load_checkpoint, read_events


def synthetic(**flags) -> RunConfig:
    return build_config(None, {"dataset": "synthetic", "device": "cpu", "robustness_samples": 0,
                               **flags})


def rows_of(events) -> list[EpochEnd]:
    return [e for e in events if isinstance(e, EpochEnd)]


# --- config ---------------------------------------------------------------------

def test_defaults_are_fp32_uncompiled_top_level_fields() -> None:
    cfg = RunConfig()
    assert (cfg.precision, cfg.compile) == ("fp32", False)
    leaves = leaf_fields()
    assert leaves["precision"][0] is None and leaves["compile"][0] is None
    assert leaves["precision"][1].metadata["doc"] and leaves["compile"][1].metadata["doc"]


@pytest.mark.parametrize("flags, message", [
    ({"precision": "fp16"}, "precision: expected one of fp32, bf16, got 'fp16'"),
    ({"precision": 16}, "precision: expected str, got 16"),
    ({"compile": "yes"}, "compile: expected bool, got 'yes'"),
    ({"compile": 1}, "compile: expected bool, got 1"),
])
def test_bad_values_name_the_field(flags: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_config(None, flags)
    assert str(info.value) == message


def test_toml_round_trip_keeps_both() -> None:
    cfg = build_config(None, {"precision": "bf16", "compile": True})
    text = dumps_toml(cfg)
    assert 'precision = "bf16"' in text and "compile = true" in text
    assert config_from_dict(to_dict(cfg)) == cfg


# --- training ----------------------------------------------------------------------

def test_bf16_run_on_the_cpu_trains_to_finite_numbers() -> None:
    bf16 = rows_of(train(synthetic(epochs=3, precision="bf16")))
    fp32 = rows_of(train(synthetic(epochs=3)))
    for row in bf16:
        assert all(math.isfinite(v) for v in (row.loss, row.ce, row.penalty, row.train_acc,
                                              row.test_acc, row.latent_norm_mean)), row
    assert bf16[-1].train_acc > 0.9 and bf16[-1].test_acc > 0.9
    # Same seed, same batches: bf16 rounding moves the loss a little, not a lot.
    assert bf16[0].loss == pytest.approx(fp32[0].loss, rel=0.02)
    assert bf16[0].loss != fp32[0].loss  # the autocast did happen


@pytest.mark.slow
def test_compiled_run_checkpoints_plain_keys_that_load_into_a_fresh_model(tmp_path: Path) -> None:
    """torch.compile works on this CPU (inductor + g++): the first step
    compiles, ~19 s for the MLP cold, ~2 s from inductor's cache.
    Checkpoints hold the plain module."""
    cfg = synthetic(epochs=2, batch_size=32, compile=True)
    session = open_session(cfg, None, None, False)
    assert isinstance(session.forward.module, OptimizedModule) and session.model is not session.forward.module
    run_dir = tmp_path / "r"
    events = list(train(cfg, run_dir=run_dir))
    assert events[-1].status == "finished"
    assert all(math.isfinite(r.loss) for r in rows_of(events))
    state = load_checkpoint(RunStore(run_dir).checkpoints()[-1])
    assert not any(k.startswith("_orig_mod.") for k in state["model"])
    run = load_run(run_dir)  # a fresh, uncompiled model
    fresh = build_model("mlp", "linear", (3, 8, 8), 4, run.config.model.latent_dim)
    fresh.load_state_dict(state["model"])  # strict: every key matches
    assert run.config.compile is True


def test_precision_and_compile_may_change_on_resume(tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    list(train(synthetic(epochs=1), run_dir=run_dir))
    events = list(train(synthetic(epochs=2, precision="bf16"), run_dir=run_dir, resume=True))
    assert events[-1].status == "finished" and [r.epoch for r in rows_of(events)] == [2]
    assert RunStore(run_dir).read_config()["precision"] == "bf16"
    with pytest.raises(UsageError, match="epochs, device, precision, compile, data_placement, loader_workers, log_to may change"):
        list(train(synthetic(epochs=3, precision="bf16", seed=1), run_dir=run_dir, resume=True))


# --- execution details -------------------------------------------------------------

def test_channels_last_only_for_conv_models_on_cuda() -> None:
    """Decided without a GPU: prepare_forward only converts the weights."""
    cnn = build_model("cnn", "linear", (3, 8, 8), 4, 8)
    assert not prepare_forward(cnn, torch.device("cpu"), "bf16", False).channels_last
    assert prepare_forward(cnn, torch.device("cuda"), "bf16", False).channels_last
    conv = cnn.backbone.net[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    mlp = build_model("mlp", "linear", (3, 8, 8), 4, 8)
    assert not prepare_forward(mlp, torch.device("cuda"), "fp32", False).channels_last


def test_denormals_are_flushed_in_the_openmp_workers_too() -> None:
    """A pool started before the flag keeps denormals in its workers unless
    flush_denormals reaches them (half of this op stayed denormal)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x = torch.full((1 << 20,), 1e-39)  # a float32 denormal
        x.mul(1.0)  # makes sure the 2-thread pool exists
        flush_denormals()
        assert int((x * 1.0 != 0).sum()) == 0
    finally:
        torch.set_num_threads(before)


# --- batches sliced from blocks augmented at once ------------------------------------

@pytest.fixture
def augmented_synthetic(monkeypatch):
    """The synthetic set with CIFAR-like augmentation (crop padding 2, flips)."""
    real = data_module._load_synthetic
    monkeypatch.setattr(data_module, "_load_synthetic",
                        lambda: real()._replace(crop_padding=2, flip=True))


def _rows(run_dir: Path, helpers) -> list[dict]:
    return helpers.epoch_rows(read_events(run_dir / "events.jsonl"))


def test_apply_crops_follows_its_draws() -> None:
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5)
    identity = torch.tensor([[2, 2, 0], [2, 2, 1]])  # offset = padding: no shift
    out = apply_crops(x, 2, True, identity)
    assert torch.equal(out[0], x[0]) and torch.equal(out[1], x[1].flip(-1))
    corner = apply_crops(x, 2, False, torch.tensor([[0, 0, 1], [4, 4, 0]]))  # flip bit ignored
    assert torch.equal(corner[0, :, 2:, 2:], x[0, :, :2, :3]) and corner[0, :, :2].eq(0).all()
    assert torch.equal(corner[1, :, :2, :3], x[1, :, 2:, 2:]) and corner[1, :, 2:].eq(0).all()


def test_batches_do_not_depend_on_where_blocks_begin(tmp_path: Path, monkeypatch, helpers,
                                                     augmented_synthetic) -> None:
    cfg = synthetic(epochs=2, batch_size=32, metrics_every=0, latent_sample_size=0)
    list(train(cfg, run_dir=tmp_path / "one-block"))
    monkeypatch.setattr(epoch_module, "BLOCK_FLOATS", 3 * 32 * 3 * 8 * 8)  # 3 batches a block
    list(train(cfg, run_dir=tmp_path / "blocks"))
    plain = synthetic(epochs=2, batch_size=32, metrics_every=0, latent_sample_size=0, augment=False)
    list(train(plain, run_dir=tmp_path / "plain"))
    one, many = _rows(tmp_path / "one-block", helpers), _rows(tmp_path / "blocks", helpers)
    assert [helpers.without_timing(r) for r in one] == [helpers.without_timing(r) for r in many]
    assert one[0]["loss"] != _rows(tmp_path / "plain", helpers)[0]["loss"]  # it did augment


def test_mid_epoch_resume_with_augmentation_is_bit_exact(tmp_path: Path, monkeypatch, helpers,
                                                         augmented_synthetic) -> None:
    """Stopped in epoch 2 at step 5, inside the second block of 3 batches:
    the resumed epoch starts a block at its step and redoes the same draws."""
    monkeypatch.setattr(epoch_module, "BLOCK_FLOATS", 3 * 32 * 3 * 8 * 8)
    cfg = synthetic(epochs=3, batch_size=32, metrics_every=0, latent_sample_size=0)
    list(train(cfg, run_dir=tmp_path / "straight"))
    control, real, count = Control(), epoch_module.compute_loss, [0]

    def stop_in_step_13(*args, **kwargs):
        count[0] += 1
        if count[0] == 8 + 5:
            control.stop.set()
        return real(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(epoch_module, "compute_loss", stop_in_step_13)
        assert list(train(cfg, control, run_dir=tmp_path / "r"))[-1].status == "stopped"
    partial = load_checkpoint(RunStore(tmp_path / "r").latest_checkpoint())["partial"]
    assert partial["step"] == 5 and partial["draws"].shape == (256, 3)
    list(train(cfg, run_dir=tmp_path / "r", resume=True))
    got, want = _rows(tmp_path / "r", helpers), _rows(tmp_path / "straight", helpers)
    for row, ref in zip(got, want, strict=True):  # latent_norm_cov: see test_train.py
        row, ref = helpers.without_timing(row), helpers.without_timing(ref)
        assert row.pop("latent_norm_cov") == pytest.approx(ref.pop("latent_norm_cov"), rel=1e-12)
        assert row == ref
