"""`lpc` under faults (docs/RELIABILITY.md): a diverging run, an unwritable
or full runs directory, damaged and malicious checkpoints, conflicting
flags, bad latents files. Usage errors exit 2 with one line on stderr and
write nothing; a run that fails in mid-run exits 1."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import lpc_engine.training.epoch as epoch_module
import lpc_engine.runs.store as store_module
from lpc_engine.runs.store import RunStore, checksum_path, load_checkpoint, read_events
from lpc_cli import lpc

SYNTH = ["run", "--dataset", "synthetic", "--device", "cpu", "--robustness-samples", "0",
         "--checkpoint-every", "1"]



def one_line_error(err: str) -> bool:
    return err.startswith("lpc: error: ") and err.count("\n") == 1 and "Traceback" not in err


def flat(err: str) -> str:
    """stderr as one line: rich wraps progress messages at the console width."""
    return " ".join(err.split())


def test_a_diverging_run_exits_1_with_an_alert_and_its_last_good_checkpoint(tmp_path, capsys,
                                                                             monkeypatch) -> None:
    real = epoch_module.compute_loss

    def nan_in_epoch_3(out, y, obj, share=None):  # synthetic: gamma 0.01 x1.5 an epoch
        loss, ce, penalty = real(out, y, obj, share)
        return (loss * float("nan") if obj.gamma > 0.02 else loss), ce, penalty

    monkeypatch.setattr(epoch_module, "compute_loss", nan_in_epoch_3)
    runs = tmp_path / "runs"
    code, out, err = lpc(capsys, *SYNTH, "--epochs", "5", "--runs-dir", runs, "--name", "d", "--json")
    assert code == 1
    assert "alert" in err and "loss is nan in epoch 3" in flat(err)
    summary = json.loads(out)
    assert summary["status"] == "diverged" and summary["epochs_done"] == 3  # its NaN row is recorded
    alerts = [r for r in read_events(runs / "d" / "events.jsonl") if r["event"] == "alert"]
    assert [(a["code"], a["level"]) for a in alerts] == [("non_finite_loss", "error")]
    newest = RunStore(runs / "d").latest_checkpoint()
    assert newest.name == "epoch-000002-step-0000000.pt" and load_checkpoint(newest)["epoch"] == 2


def test_unwritable_runs_dir_exits_2_and_writes_nothing(tmp_path, capsys, monkeypatch) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    if os.geteuid() == 0:  # root writes anywhere: simulate what chmod would do
        real_mkdir = Path.mkdir

        def denied(self, *args, **kwargs):
            if str(self).startswith(str(runs)):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
            return real_mkdir(self, *args, **kwargs)

        monkeypatch.setattr(Path, "mkdir", denied)
    else:
        runs.chmod(0o500)
    try:
        code, out, err = lpc(capsys, *SYNTH, "--epochs", "1", "--runs-dir", runs, "--name", "r")
    finally:
        runs.chmod(0o700)
    assert code == 2 and out == "" and one_line_error(err)
    assert "cannot write" in err and "Permission denied" in err
    assert list(runs.iterdir()) == []


def test_a_full_disk_at_creation_exits_2_and_leaves_nothing(tmp_path, capsys, monkeypatch) -> None:
    def full(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store_module, "atomic_write", full)
    runs = tmp_path / "new" / "runs"  # not there yet: made, then removed again
    code, out, err = lpc(capsys, *SYNTH, "--epochs", "1", "--runs-dir", runs, "--name", "r")
    assert code == 2 and out == "" and one_line_error(err) and "No space left" in err
    assert not (tmp_path / "new").exists()


def test_a_full_disk_in_mid_run_exits_1_and_resume_finishes(tmp_path, capsys, monkeypatch) -> None:
    runs, real = tmp_path / "runs", store_module.atomic_write

    def full_at_epoch_2(path, data):
        if "epoch-000002" in path.name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, data)

    monkeypatch.setattr(store_module, "atomic_write", full_at_epoch_2)
    code, out, err = lpc(capsys, *SYNTH, "--epochs", "3", "--runs-dir", runs, "--name", "r")
    last = err.splitlines()[-1]  # after the progress lines: a failed run, not a usage error
    assert code == 1 and out == "" and last.startswith("lpc: error: runs dir: cannot write")
    assert "No space left" in last and "--resume" in last and "Traceback" not in err
    assert [p.name for p in RunStore(runs / "r").checkpoints()] == ["epoch-000001-step-0000000.pt"]
    monkeypatch.undo()
    code, _, err = lpc(capsys, "run", "--resume", "--runs-dir", runs, "--name", "r")
    assert code == 0, err
    assert [r["epoch"] for r in read_events(runs / "r" / "events.jsonl") if r["event"] == "epoch"] == [1, 2, 3]


def test_runs_dir_that_is_a_file_exits_2(tmp_path, capsys) -> None:
    (tmp_path / "file").write_text("x")
    code, out, err = lpc(capsys, *SYNTH, "--runs-dir", tmp_path / "file", "--name", "r")
    assert code == 2 and one_line_error(err) and "not a folder" in err


def test_resume_and_overwrite_together_exit_2(tmp_path, capsys) -> None:
    code, _, err = lpc(capsys, "run", "--resume", "--overwrite", "--runs-dir", tmp_path, "--name", "r")
    assert code == 2 and one_line_error(err) and "--overwrite" in err


@pytest.fixture
def stopped_run(tmp_path, capsys) -> Path:
    runs = tmp_path / "runs"
    assert lpc(capsys, *SYNTH, "--epochs", "2", "--runs-dir", runs, "--name", "r")[0] == 0
    return runs


def test_a_corrupt_newest_checkpoint_is_reported_on_stderr(stopped_run, capsys) -> None:
    newest = RunStore(stopped_run / "r").latest_checkpoint()
    newest.write_bytes(newest.read_bytes()[:-10])
    code, _, err = lpc(capsys, "run", "--resume", "--epochs", "3", "--runs-dir", stopped_run, "--name", "r")
    assert code == 0, err
    assert "does not match its SHA-256" in flat(err) and "resuming from epoch-000001" in flat(err)


class _Touch:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def test_resume_refuses_a_checkpoint_with_a_pickled_payload(stopped_run, tmp_path, capsys,
                                                            helpers) -> None:
    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    torch.save({"epoch": 2, "model": _Touch(str(marker))}, buffer)
    evil = stopped_run / "r" / "checkpoints" / "epoch-000003-step-0000000.pt"
    evil.write_bytes(buffer.getvalue())
    checksum_path(evil).write_text(hashlib.sha256(buffer.getvalue()).hexdigest() + "\n")
    before = helpers.tree(stopped_run)
    code, out, err = lpc(capsys, "run", "--resume", "--runs-dir", stopped_run, "--name", "r")
    assert code == 2 and out == "" and one_line_error(err)
    assert "not a plain-weights checkpoint" in err and ("builtins.open" in err or "io.open" in err)
    assert not marker.exists() and helpers.tree(stopped_run) == before


@pytest.mark.parametrize("arrays, fragment", [
    ({"z": np.zeros((0, 3)), "y": np.zeros(0, int)}, "holds no latents"),
    ({"z": np.zeros((5, 2, 2)), "y": np.arange(5) % 2}, "2-D (N, d)"),
    ({"z": np.ones((50, 3)), "y": np.arange(40) % 2}, "one label per latent"),
    ({"z": np.ones((50, 3)) + 1j, "y": np.arange(50) % 2}, "real numbers"),
    ({"z": np.ones((50, 3)), "y": np.arange(50) % 2, "W": np.ones((2, 4))}, "classifier_weight"),
    ({"z": np.ones((50, 3)), "y": np.arange(50) % 2, "predictions": np.ones(7)}, "predictions"),
    ({"z": np.full((50, 3), np.inf), "y": np.arange(50) % 2}, "non-finite"),
    ({"z": np.ones((4, 3)), "y": np.arange(4)}, "single sample"),
])
def test_analyze_says_what_is_wrong_with_a_latents_file(arrays, fragment, tmp_path, capsys) -> None:
    """More shapes than tests/cli/test_measure_cli.py (keys, NaN, one class, labels)."""
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    before = sorted(tmp_path.iterdir())
    code, out, err = lpc(capsys, "analyze", path, "--json")
    assert code == 2 and out == "" and one_line_error(err) and fragment in err, err
    assert sorted(tmp_path.iterdir()) == before


@pytest.mark.parametrize("policy", ["warn", "hold"])
def test_merge_policies_warn_and_hold_headless(policy, tmp_path, capsys) -> None:
    """(pause headless: tests/cli/test_cli.py::test_headless_pause_policy_...)"""
    (tmp_path / "p.toml").write_text(f'[gamma]\nmerge_policy = "{policy}"\n')
    runs = tmp_path / "runs"
    code, out, err = lpc(capsys, *SYNTH, "--config", tmp_path / "p.toml", "--epochs", "5",
                         "--gamma-init", "0.01", "--gamma-factor", "10", "--gamma-max", "1e6",
                         "--lr", "0.01", "--runs-dir", runs, "--name", "m", "--json")
    assert code == 0, err
    assert "classes are merging at the origin" in flat(err)
    gammas = [r["gamma"] for r in read_events(runs / "m" / "events.jsonl") if r["event"] == "epoch"]
    if policy == "hold":
        assert gammas[3:] == [gammas[2]] * 2 and "Holding gamma" in flat(err)
    else:
        assert gammas[3] == pytest.approx(gammas[2] * 10)


@pytest.mark.parametrize("name, text", [("c.py", "import os\nos.system('touch pwned')\n"),
                                        ("c.yaml", "epochs: 3\n"), ("c.cfg", "epochs = 3\n")])
def test_configs_are_toml_or_json_only(name, text, tmp_path, capsys) -> None:
    (tmp_path / name).write_text(text)
    code, out, err = lpc(capsys, *SYNTH, "--config", tmp_path / name, "--runs-dir", tmp_path / "runs")
    assert code == 2 and one_line_error(err) and "must be a .toml or .json file" in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "pwned").exists()


def test_eval_names_a_corrupt_checkpoint_and_uses_the_previous(stopped_run, capsys) -> None:
    store = RunStore(stopped_run / "r")
    older, newest = store.checkpoints()[-2:]
    newest.write_bytes(newest.read_bytes()[:100])
    code, out, err = lpc(capsys, "eval", stopped_run / "r", "--samples", "0")
    assert code == 0 and err.startswith("lpc: warning: ") and err.count("\n") == 1
    assert newest.name in err and "SHA-256" in err and "older checkpoint" in err
    older.write_bytes(older.read_bytes()[:100])  # nothing readable left: an error naming the newest
    code, out, err = lpc(capsys, "eval", stopped_run / "r", "--samples", "0")
    assert code == 2 and out == "" and one_line_error(err) and newest.name in err
