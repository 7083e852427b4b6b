"""Streamed data (data_placement = "stream"): the same epoch rows as the
resident run of the same config, with augmentation too, and an exact
mid-epoch resume; "auto" stays resident on the CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import lpc_engine.training.epoch as epoch_module
from lpc_engine import Control, build_config, train
from lpc_engine.data.datasets import load_data
from lpc_engine.data.stream import choose_placement
from lpc_engine.runs.store import RunStore, load_checkpoint, read_events


def _rows(run_dir: Path, helpers) -> list[dict]:
    return [helpers.without_timing(r) for r in helpers.epoch_rows(read_events(run_dir / "events.jsonl"))]


def _assert_same_rows(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want) > 0
    for row, ref in zip(got, want):
        assert row.keys() == ref.keys()
        for key, value in ref.items():
            if isinstance(value, float) and not np.isnan(value):
                assert row[key] == pytest.approx(value, rel=1e-5, abs=1e-12), key
            else:
                assert row[key] == value, key


def _write_npz_images(path: Path) -> Path:
    """3 classes of 3 x 16 x 16 images (class colour plus noise): CIFAR-like augmentation applies."""
    rng = np.random.default_rng(0)
    colours = rng.normal(size=(3, 3, 1, 1))
    def split(n):
        y = np.arange(n) % 3
        return (colours[y] + 0.8 * rng.normal(size=(n, 3, 16, 16))).astype(np.float32), y
    x_tr, y_tr = split(96)
    x_te, y_te = split(48)
    np.savez(path, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    return path


@pytest.mark.parametrize("dataset", ["digits", "npz-images"])
def test_streamed_run_gives_the_resident_runs_epoch_rows(dataset, tmp_path: Path, helpers) -> None:
    flags = {"device": "cpu", "epochs": 3, "robustness_samples": 50, "metrics_every": 3, "profile": "quick",
             "latent_sample_size": 0, "batch_size": 32}
    if dataset == "npz-images":
        flags.update(dataset="npz", data_dir=str(_write_npz_images(tmp_path / "images.npz")), backbone="cnn",
                     profile="default", latent_dim=8)
    resident = build_config(None, {**flags, "data_placement": "resident"})
    streamed = build_config(None, {**flags, "data_placement": "stream", "loader_workers": 2})
    ends = [list(train(cfg, run_dir=tmp_path / name))[-1]
            for name, cfg in (("resident", resident), ("stream", streamed))]
    _assert_same_rows(_rows(tmp_path / "stream", helpers), _rows(tmp_path / "resident", helpers))
    for part, key in (("metrics", "separation_ratio"), ("metrics", "gmm_score_mean"),
                      ("robustness", "robustness_mean")):
        want = ends[0].summary[part][key]
        assert ends[1].summary[part][key] == pytest.approx(want, rel=1e-5), key


def test_npz_images_are_augmented_as_cifar_is(tmp_path: Path) -> None:
    data = load_data("npz", _write_npz_images(tmp_path / "images.npz"))
    assert (data.crop_padding, data.flip) == (2, True)  # 1/8 of the side, as CIFAR's 4 of 32


def test_streamed_run_resumes_in_mid_epoch_exactly(tmp_path: Path, monkeypatch, helpers) -> None:
    """Stopped at step 5 of epoch 2, inside the second block of 3 batches:
    the resumed stream plans its blocks from that step."""
    monkeypatch.setattr(epoch_module, "BLOCK_FLOATS", 3 * 32 * 64)
    cfg = build_config(None, {"device": "cpu", "epochs": 3, "robustness_samples": 0, "metrics_every": 0,
                              "latent_sample_size": 0, "profile": "quick", "batch_size": 32,
                              "data_placement": "stream", "loader_workers": 1})
    list(train(cfg, run_dir=tmp_path / "straight"))
    steps = -(-1437 // 32)
    control, real, count = Control(), epoch_module.compute_loss, [0]

    def stop_in_epoch_2_step_5(*args, **kwargs):
        count[0] += 1
        if count[0] == steps + 5:
            control.stop.set()
        return real(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(epoch_module, "compute_loss", stop_in_epoch_2_step_5)
        assert list(train(cfg, control, run_dir=tmp_path / "r"))[-1].status == "stopped"
    partial = load_checkpoint(RunStore(tmp_path / "r").latest_checkpoint())["partial"]
    assert partial["step"] == 5 and partial["draws"].shape == (1437, 3)  # augmented: digits' 1-pixel crops
    list(train(cfg, run_dir=tmp_path / "r", resume=True))
    got, want = _rows(tmp_path / "r", helpers), _rows(tmp_path / "straight", helpers)
    for row, ref in zip(got, want, strict=True):  # latent_norm_cov: see test_train.py
        assert row.pop("latent_norm_cov") == pytest.approx(ref.pop("latent_norm_cov"), rel=1e-12)
        assert row == ref


def test_a_resumed_run_may_change_its_placement(tmp_path: Path, helpers) -> None:
    base = {"device": "cpu", "robustness_samples": 0, "metrics_every": 0, "latent_sample_size": 0,
            "profile": "quick", "batch_size": 64}
    list(train(build_config(None, {**base, "epochs": 4}), run_dir=tmp_path / "straight"))
    list(train(build_config(None, {**base, "epochs": 2}), run_dir=tmp_path / "r"))
    list(train(build_config(None, {**base, "epochs": 4, "data_placement": "stream"}),
               run_dir=tmp_path / "r", resume=True))
    _assert_same_rows(_rows(tmp_path / "r", helpers), _rows(tmp_path / "straight", helpers))


def test_auto_placement_is_resident_on_the_cpu_and_stream_is_kept_in_host_memory() -> None:
    cpu = torch.device("cpu")
    assert choose_placement("auto", 10**12, cpu) == "resident"
    assert choose_placement("stream", 1, cpu) == "stream"
    data = load_data("digits", placement="stream")
    assert data.streamed and not load_data("digits").streamed
    assert torch.equal(data.x_train, load_data("digits").x_train)  # the same inputs, bit for bit
