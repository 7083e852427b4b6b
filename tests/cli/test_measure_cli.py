"""The measurement suite wired into training and the CLI: MetricsComputed
rows every `metrics_every` epochs, LatentSample events, the robustness table
at the end, `lpc analyze FILE.npz` and `lpc eval RUN_DIR`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lpc_engine import LatentSample, build_config, train
from lpc_engine.metrics.binarity import fit_node_mixtures
from lpc_engine.events import LatentSample, MetricsComputed, RobustnessComputed
from lpc_engine.metrics import METRIC_NAMES
from lpc_engine.runs.store import read_events
from lpc_cli import lpc

SYNTH = ["--dataset", "synthetic", "--device", "cpu"]



@pytest.fixture(scope="module")
def synth_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("measure")
    cfg = build_config(flags={"dataset": "synthetic", "epochs": 4, "metrics_every": 2,
                              "robustness_samples": 50, "latent_sample_size": 100, "device": "cpu"})
    events = list(train(cfg, run_dir=runs / "m"))
    return runs / "m", events


def test_training_measures_every_metrics_every_epochs(synth_run) -> None:
    run_dir, events = synth_run
    measured = [e.epoch for e in events if isinstance(e, MetricsComputed)]
    assert measured == [2, 4]
    samples = [e for e in events if isinstance(e, LatentSample)]
    assert [s.epoch for s in samples] == [2, 4]
    assert samples[0].z.shape == (100, 8) and samples[0].y.shape == (100,)  # synthetic lpc: d = 8
    rows = [r for r in read_events(run_dir / "events.jsonl") if r["event"] == "metrics"]
    assert [r["epoch"] for r in rows] == [2, 4]
    assert set(METRIC_NAMES) <= rows[-1]["metrics"].keys()
    assert not [r for r in read_events(run_dir / "events.jsonl") if r["event"] == "latents"]


def test_latent_sample_carries_node_fits_and_codebook(synth_run) -> None:
    """The histograms' per-node scores are the mixtures fitted on the very
    sample shown; the codebook's signs are those of the class means."""
    sample = [e for e in synth_run[1] if isinstance(e, LatentSample)][-1]
    fit = fit_node_mixtures(torch.from_numpy(sample.z), seed=0 + sample.epoch)
    assert sample.node_score == pytest.approx(fit.score.tolist())
    assert sample.node_peak_distance == pytest.approx(fit.peak_distance.tolist())
    assert len(sample.codes) == len(sample.classes) and all(len(c) == 8 for c in sample.codes)
    assert {v for code in sample.codes for v in code} <= {-1, 1}


def test_robustness_table_at_the_end(synth_run) -> None:
    run_dir, events = synth_run
    tables = [e for e in events if isinstance(e, RobustnessComputed)]
    assert len(tables) == 1 and tables[0].epoch == 4
    table = tables[0].table
    assert table["samples"] == 50 and 0.0 <= table["deepfool_converged"] <= 1.0
    assert table["robustness_mean"] > 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["robustness"]["robustness_mean"] == pytest.approx(table["robustness_mean"])
    assert summary["metrics"]["separation_ratio"] > 0


def test_measuring_does_not_change_training(tmp_path) -> None:
    """Metrics and DeepFool draw from private generators: the epoch rows are
    the same with and without them."""
    def rows(metrics_every: int, samples: int) -> list[tuple]:
        cfg = build_config(flags={"dataset": "synthetic", "epochs": 3, "metrics_every": metrics_every,
                                  "robustness_samples": samples, "device": "cpu"})
        return [(e.loss, e.train_acc, e.test_acc) for e in train(cfg) if e.kind == "epoch"]
    assert rows(1, 20) == rows(0, 0)


def test_eval_recomputes_a_saved_run(synth_run, capsys) -> None:
    run_dir, _ = synth_run
    code, out, err = lpc(capsys, "eval", run_dir, "--samples", "50", "--json")
    assert code == 0, err
    values = json.loads(out)
    saved = json.loads((run_dir / "summary.json").read_text())
    assert values["epoch"] == 4
    assert values["separation_ratio"] == pytest.approx(saved["metrics"]["separation_ratio"], rel=1e-5)
    assert values["robustness_mean"] == pytest.approx(saved["robustness"]["robustness_mean"], rel=1e-5)
    code, out, _ = lpc(capsys, "eval", run_dir, "--samples", "0")
    assert code == 0 and "separation_ratio" in out


def test_eval_writes_the_latent_sample_of_the_checkpoint_epoch(tmp_path, capsys) -> None:
    from lpc_engine.runs.latents import latent_files, read_latent_sample

    cfg = build_config(flags={"dataset": "synthetic", "epochs": 2, "metrics_every": 0, "device": "cpu",
                              "robustness_samples": 0, "latent_sample_size": 64})
    events = list(train(cfg, run_dir=tmp_path / "r"))
    (live,) = [e for e in events if isinstance(e, LatentSample)]
    latent_files(tmp_path / "r")[2].unlink()  # as if the run had written none
    code, _, err = lpc(capsys, "eval", tmp_path / "r", "--samples", "0", "--json")
    assert code == 0, err
    again = read_latent_sample(latent_files(tmp_path / "r")[2])
    np.testing.assert_array_equal(again.z, live.z)  # the same model, draw and fits
    assert again.node_peak_distance == pytest.approx(live.node_peak_distance, rel=1e-9)


def test_analyze_prints_every_metric(tmp_path, capsys) -> None:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 50)
    z = np.eye(4, 6)[y] * 3 + 0.1 * rng.standard_normal((200, 6))
    np.savez(tmp_path / "lat.npz", z=z.astype(np.float32), y=y)
    code, out, err = lpc(capsys, "analyze", tmp_path / "lat.npz", "--json")
    assert code == 0, err
    values = json.loads(out)
    assert set(METRIC_NAMES) <= values.keys()
    assert values["n"] == 200 and values["d"] == 6 and values["codebook_distinct"] == 4
    code, out, _ = lpc(capsys, "analyze", tmp_path / "lat.npz")
    assert code == 0 and "separation_ratio" in out


@pytest.mark.parametrize("arrays, fragment", [
    ({"latents": np.zeros((4, 2)), "y": np.arange(4)}, "lacks z"),
    ({"z": np.zeros((4, 2))}, "lacks y"),
    ({"z": np.zeros(4), "y": np.arange(4)}, "z"),
    ({"z": np.zeros((4, 2)), "y": np.arange(3)}, "y"),
    ({"z": np.array([[0.0, np.nan], [1, 1], [2, 2], [3, 3]]), "y": np.array([0, 0, 1, 1])}, "finite"),
    ({"z": np.ones((6, 2)), "y": np.zeros(6, dtype=int)}, "class"),
    ({"z": np.ones((4, 2)), "y": np.array([0.5, 1, 0, 1])}, "integer"),
])
def test_analyze_refuses_bad_files(tmp_path, capsys, arrays, fragment) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    code, out, err = lpc(capsys, "analyze", path, "--json")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and fragment in err and "Traceback" not in err


def test_analyze_refuses_missing_and_non_npz_files(tmp_path, capsys) -> None:
    code, _, err = lpc(capsys, "analyze", tmp_path / "none.npz")
    assert code == 2 and "not found" in err
    (tmp_path / "text.npz").write_text("not a zip")
    code, _, err = lpc(capsys, "analyze", tmp_path / "text.npz")
    assert code == 2 and len(err.strip().splitlines()) == 1
    np.save(tmp_path / "plain.npy", np.zeros((5, 2)))  # one array: no y beside it
    code, _, err = lpc(capsys, "analyze", tmp_path / "plain.npy")
    assert code == 2 and "holds one array" in err and len(err.strip().splitlines()) == 1


def test_eval_refuses_a_non_run(tmp_path, capsys) -> None:
    code, _, err = lpc(capsys, "eval", tmp_path)
    assert code == 2 and "not a run directory" in err


@pytest.mark.parametrize("device, message", [("gpu", "device: expected auto, cpu, cuda or cuda:N, got 'gpu'"),
                                             ("cuda", "device: cuda requested but no CUDA GPU is visible")])
def test_eval_says_what_is_wrong_with_the_device_not_the_checkpoint(tmp_path, capsys, device, message) -> None:
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    code, _, err = lpc(capsys, "eval", tmp_path, "--device", device)
    assert code == 2 and message in err
