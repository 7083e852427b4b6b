"""Latent samples on disk (runs/latents.py): one .npz a measured epoch, no
pickles, the same sample the live event carried; `lpc eval` writes one too;
the reader and the TUI's history find them."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from lpc_engine import LatentSample, build_config, train
from lpc_engine.runs.latents import latent_files, read_latent_sample
from lpc_engine.runs.reader import RunReader


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("latents") / "r"
    cfg = build_config(None, {"dataset": "synthetic", "device": "cpu", "epochs": 4, "metrics_every": 2,
                              "robustness_samples": 0, "latent_sample_size": 100})
    live = [e for e in train(cfg, run_dir=run_dir) if isinstance(e, LatentSample)]
    return run_dir, live


def test_one_file_a_measured_epoch_holding_the_live_sample(run) -> None:
    run_dir, live = run
    assert [s.epoch for s in live] == [2, 4] and list(latent_files(run_dir)) == [2, 4]
    for sample in live:
        path = latent_files(run_dir)[sample.epoch]
        with np.load(path, allow_pickle=False) as npz:  # plain arrays only
            assert npz["z"].dtype == np.float32 and npz["z"].shape == (100, 8)
        back = read_latent_sample(path)
        np.testing.assert_array_equal(back.z, sample.z)
        np.testing.assert_array_equal(back.y, sample.y)
        assert back.node_score == pytest.approx(sample.node_score)
        assert len(back.node_means) == 8
        for key in ("node_weights", "node_means", "node_stds"):
            np.testing.assert_allclose(getattr(back, key), getattr(sample, key), rtol=1e-12)
        assert back.classes == sample.classes and back.codes == sample.codes


def test_the_reader_gives_the_last_or_a_chosen_epoch(run) -> None:
    run_dir, live = run
    reader = RunReader(run_dir)
    assert reader.latent_epochs() == [2, 4]
    assert reader.latent_sample().epoch == 4 and reader.latent_sample(2).epoch == 2
    assert reader.latent_sample(3) is None


def test_a_file_is_never_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "epoch-000001.npz"
    np.savez(path, z=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        read_latent_sample(path)
    assert zipfile.is_zipfile(path)
