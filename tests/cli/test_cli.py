"""`lpc` (lpc_engine.cli.main, in-process; one test runs the installed script):
reproducible runs, exact resume, bad input, --json, --dry-run, `lpc runs`."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from rich.console import Console

from lpc_engine import build_config, load_run
from lpc_engine.cli.app import main
from lpc_engine.cli.render import runs_table
from lpc_engine.config import to_dict
from lpc_engine.runs.store import read_events
from lpc_cli import lpc

DIGITS = ["--preset", "lpc", "--dataset", "digits", "--seed", "0"]
SYNTH = ["--dataset", "synthetic", "--device", "cpu"]



@pytest.fixture(scope="module")
def digits_runs(tmp_path_factory):
    """Run `a`: `lpc run --preset lpc --dataset digits --epochs 20 --seed 0`."""
    runs = tmp_path_factory.mktemp("digits") / "D"
    assert main(["run", *DIGITS, "--epochs", "20", "--runs-dir", str(runs), "--name", "a"]) == 0
    return runs


def _epoch_rows(run_dir: Path, helpers) -> list[dict]:
    return [helpers.without_timing(r) for r in helpers.epoch_rows(read_events(run_dir / "events.jsonl"))]


# --- acceptance 1 ------------------------------------------------------------------

@pytest.mark.slow
def test_digits_run_is_recorded_and_reproducible(digits_runs: Path, capsys, helpers) -> None:
    a = digits_runs / "a"
    rows = helpers.epoch_rows(read_events(a / "events.jsonl"))
    assert [r["epoch"] for r in rows] == list(range(1, 21))
    for row in rows:
        assert row["event"] == "epoch"
        assert helpers.EPOCH_ROW_KEYS <= row.keys(), helpers.EPOCH_ROW_KEYS - row.keys()
        assert all(row[k] is not None for k in helpers.EPOCH_ROW_KEYS)
    assert list((a / "checkpoints").glob("*.pt"))
    config = json.loads((a / "config.json").read_text())
    assert config["epochs"] == 20 and config["seed"] == 0
    assert config["model"]["preset"] == "lpc" and config["data"]["dataset"] == "digits"
    summary = json.loads((a / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs_done"] == 20
    assert summary["test_acc"] == rows[-1]["test_acc"]

    code, _, err = lpc(capsys, "run", *DIGITS, "--epochs", "20", "--runs-dir", digits_runs,
                       "--name", "b")
    assert code == 0, err
    assert _epoch_rows(digits_runs / "b", helpers) == _epoch_rows(a, helpers)
    summary_b = json.loads((digits_runs / "b" / "summary.json").read_text())
    assert helpers.without_timing(summary_b) == helpers.without_timing(summary)


# --- acceptance 2a ----------------------------------------------------------------------

@pytest.mark.slow
def test_digits_run_stopped_at_10_and_resumed_matches_20_straight(digits_runs: Path, capsys,
                                                                  helpers) -> None:
    code, _, err = lpc(capsys, "run", *DIGITS, "--epochs", "10", "--runs-dir", digits_runs,
                       "--name", "c")
    assert code == 0, err
    assert len(helpers.epoch_rows(read_events(digits_runs / "c" / "events.jsonl"))) == 10
    code, out, err = lpc(capsys, "run", "--epochs", "20", "--resume", "--runs-dir", digits_runs,
                         "--name", "c", "--json")
    assert code == 0, err
    resumed = json.loads(out)
    assert resumed["status"] == "finished" and resumed["epochs_done"] == 20
    assert _epoch_rows(digits_runs / "c", helpers) == _epoch_rows(digits_runs / "a", helpers)
    straight = json.loads((digits_runs / "a" / "summary.json").read_text())
    final = json.loads((digits_runs / "c" / "summary.json").read_text())
    assert helpers.without_timing(final) == helpers.without_timing(straight)
    assert json.loads((digits_runs / "c" / "config.json").read_text())["epochs"] == 20


def test_resume_on_synthetic_via_cli(tmp_path: Path, capsys, helpers) -> None:
    """The same as above on the synthetic set, fast enough for every run."""
    runs = tmp_path / "runs"
    assert lpc(capsys, "run", *SYNTH, "--epochs", "4", "--runs-dir", runs, "--name", "s")[0] == 0
    assert lpc(capsys, "run", *SYNTH, "--epochs", "2", "--runs-dir", runs, "--name", "p")[0] == 0
    code, _, err = lpc(capsys, "run", "--epochs", "4", "--resume", "--runs-dir", runs, "--name", "p")
    assert code == 0, err
    assert _epoch_rows(runs / "p", helpers) == _epoch_rows(runs / "s", helpers)


def test_resume_accepts_the_original_command_plus_resume(tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    base = ["run", *SYNTH, "--seed", "0", "--runs-dir", runs, "--name", "x"]
    assert lpc(capsys, *base, "--epochs", "2")[0] == 0
    code, _, err = lpc(capsys, *base, "--epochs", "3", "--resume")
    assert code == 0, err


def test_failed_resume_leaves_the_run_untouched(tmp_path: Path, capsys, helpers) -> None:
    import numpy as np
    rng = np.random.default_rng(0)
    data = tmp_path / "d.npz"
    np.savez(data, x_train=rng.normal(size=(64, 5)).astype("float32"), y_train=np.arange(64) % 2,
             x_test=rng.normal(size=(16, 5)).astype("float32"), y_test=np.arange(16) % 2)
    runs = tmp_path / "runs"
    code, _, err = lpc(capsys, "run", "--dataset", "npz", "--data-dir", data, "--device", "cpu",
                       "--epochs", "1", "--runs-dir", runs, "--name", "n")
    assert code == 0, err
    before = helpers.tree(runs)
    data.unlink()
    code, out, err = lpc(capsys, "run", "--resume", "--epochs", "3", "--runs-dir", runs, "--name", "n")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert json.loads((runs / "n" / "config.json").read_text())["epochs"] == 1
    assert helpers.tree(runs) == before


def test_headless_pause_policy_stops_with_a_checkpoint_then_resumes(tmp_path: Path, capsys) -> None:
    """No one can resume a paused headless run: lpc stops it (exit 1), and
    --resume continues it."""
    (tmp_path / "pause.toml").write_text('[gamma]\nmerge_policy = "pause"\n')
    runs = tmp_path / "runs"
    code, out, err = lpc(capsys, "run", *SYNTH, "--config", tmp_path / "pause.toml", "--epochs", "6",
                         "--gamma-init", "0.01", "--gamma-factor", "10", "--gamma-max", "1e6",
                         "--lr", "0.01", "--runs-dir", runs, "--name", "m", "--json")
    assert code == 1
    summary = json.loads(out)
    assert summary["status"] == "stopped" and summary["epochs_done"] == 3
    assert "merge policy 'pause'" in err
    code, out, err = lpc(capsys, "run", "--resume", "--runs-dir", runs, "--name", "m", "--json")
    assert code == 0, err
    assert json.loads(out)["epochs_done"] == 6


def test_ctrl_c_stops_mid_epoch_with_a_checkpoint_and_resume_matches(tmp_path: Path, capsys,
                                                                    monkeypatch, helpers) -> None:
    """SIGINT during step 3 of epoch 2: lpc saves a checkpoint and exits 1;
    --resume then gives the rows of a straight run."""
    import signal

    import lpc_engine.training.epoch as epoch_module
    runs = tmp_path / "runs"
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN under nohup
    assert lpc(capsys, "run", *SYNTH, "--epochs", "3", "--runs-dir", runs, "--name", "straight")[0] == 0
    real, count = epoch_module.compute_loss, [0]

    def interrupting(*args, **kwargs):
        count[0] += 1
        if count[0] == 4 + 3:  # synthetic: 4 steps an epoch at batch 64
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(epoch_module, "compute_loss", interrupting)
        code, out, err = lpc(capsys, "run", *SYNTH, "--epochs", "3", "--runs-dir", runs,
                             "--name", "c", "--json")
    assert signal.getsignal(signal.SIGINT) is before  # restored
    assert code == 1 and "stopping" in err
    summary = json.loads(out)
    assert summary["status"] == "stopped" and summary["epochs_done"] == 1
    mid_epoch = [p for p in (runs / "c" / "checkpoints").glob("epoch-000001-step-*.pt")
                 if not p.name.endswith("-step-0000000.pt")]
    assert mid_epoch  # a checkpoint in the middle of epoch 2
    code, _, err = lpc(capsys, "run", "--resume", "--runs-dir", runs, "--name", "c")
    assert code == 0, err
    rows = helpers.epoch_rows(read_events(runs / "c" / "events.jsonl"))
    ref = helpers.epoch_rows(read_events(runs / "straight" / "events.jsonl"))
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for row, want in zip(rows, ref, strict=True):
        got, want = helpers.without_timing(row), helpers.without_timing(want)
        # latent_norm_cov of the interrupted epoch: see test_mid_epoch_resume_is_bit_exact
        assert got.pop("latent_norm_cov") == pytest.approx(want.pop("latent_norm_cov"), rel=1e-12)
        assert got == want


# --- acceptance 4: bad input ----------------------------------------------------------------

BAD_INPUTS = {
    "unknown preset": ["--preset", "nope"],
    "negative epochs": ["--epochs", "-3"],
    "gamma max below init": ["--gamma-init", "0.5", "--gamma-max", "0.1"],
    "missing data dir": ["--dataset", "cifar10", "--data-dir", "/nonexistent"],
    "malformed toml": ["--config", "{bad_toml}"],
    "non-integer epochs": ["--epochs", "abc"],
    "run name escaping": ["--name", "../x"],
    "unknown option": ["--bogus"],
    "resume of no run": ["--resume", "--name", "ghost"],
    "missing config file": ["--config", "/nonexistent/x.toml"],
    "unknown config field": ["--config", "{unknown_field}"],
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(case: str, tmp_path: Path,
                                                          capsys) -> None:
    (tmp_path / "bad.toml").write_text("epochs = = 3\n[gamma\n")
    (tmp_path / "unknown.toml").write_text("[gamma]\ngama_init = 0.1\n")
    args = [a.format(bad_toml=tmp_path / "bad.toml", unknown_field=tmp_path / "unknown.toml")
            for a in BAD_INPUTS[case]]
    runs = tmp_path / "runs"
    flags = ["--runs-dir", runs] + ([] if "--name" in args else ["--name", "r"])
    if "--dataset" not in args and "--resume" not in args:
        flags += ["--dataset", "synthetic"]
    code, out, err = lpc(capsys, "run", *flags, *args)
    assert code == 2
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1, repr(err)
    assert err.startswith("lpc: error: ") and len(err.strip()) > len("lpc: error: ")
    assert "Traceback" not in err
    assert not runs.exists()
    assert not (tmp_path / "x").exists()


def test_existing_run_without_overwrite_exits_2_and_is_untouched(tmp_path: Path, capsys,
                                                                  helpers) -> None:
    runs = tmp_path / "runs"
    assert lpc(capsys, "run", *SYNTH, "--epochs", "1", "--runs-dir", runs, "--name", "r")[0] == 0
    before = helpers.tree(runs)
    code, out, err = lpc(capsys, "run", *SYNTH, "--epochs", "2", "--runs-dir", runs, "--name", "r")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("lpc: error: ") and "exists" in err, repr(err)
    assert helpers.tree(runs) == before
    code, _, err = lpc(capsys, "run", *SYNTH, "--epochs", "2", "--runs-dir", runs, "--name", "r",
                       "--overwrite")
    assert code == 0, err
    assert len(helpers.epoch_rows(read_events(runs / "r" / "events.jsonl"))) == 2


# --- --json, --dry-run, lpc runs ---------------------------------------------------------------

def test_run_json_prints_exactly_one_object(tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    code, out, err = lpc(capsys, "run", *SYNTH, "--epochs", "2", "--runs-dir", runs, "--name", "j",
                         "--json")
    assert code == 0, err
    assert out.endswith("\n") and out.count("\n") == 1
    summary = json.loads(out)
    assert isinstance(summary, dict)
    assert summary["status"] == "finished" and summary["epochs_done"] == 2
    assert Path(summary["run_dir"]) == runs / "j"
    assert summary == {**json.loads((runs / "j" / "summary.json").read_text()),
                       "run_dir": summary["run_dir"]}
    # Progress goes to stderr only.
    assert "training on" in err


def test_run_without_json_prints_a_table(tmp_path: Path, capsys) -> None:
    code, out, _ = lpc(capsys, "run", *SYNTH, "--epochs", "1", "--runs-dir", tmp_path, "--name", "t")
    assert code == 0
    assert "test accuracy" in out and "finished" in out


def test_dry_run_prints_toml_that_parses_and_round_trips(tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    code, out, err = lpc(capsys, "run", "--preset", "lpc-wide", "--dataset", "digits", "--epochs", "7",
                         "--gamma-max", "50", "--runs-dir", runs, "--dry-run")
    assert code == 0, err
    parsed = tomllib.loads(out)
    expected = build_config(None, {"preset": "lpc-wide", "dataset": "digits", "epochs": 7,
                                   "gamma_max": 50.0})
    assert parsed == to_dict(expected)
    assert not runs.exists()
    (tmp_path / "c.toml").write_text(out)
    code, again, _ = lpc(capsys, "run", "--config", tmp_path / "c.toml", "--runs-dir", runs,
                         "--dry-run")
    assert code == 0 and again == out
    assert not runs.exists()


def test_config_file_values_under_flags(tmp_path: Path, capsys) -> None:
    (tmp_path / "c.toml").write_text('epochs = 9\n[data]\ndataset = "synthetic"\n'
                                     "[gamma]\ngamma_max = 3.0\n")
    code, out, _ = lpc(capsys, "run", "--config", tmp_path / "c.toml", "--epochs", "4", "--dry-run")
    assert code == 0
    parsed = tomllib.loads(out)
    assert parsed["epochs"] == 4 and parsed["gamma"]["gamma_max"] == 3.0
    assert parsed["data"]["dataset"] == "synthetic"
    code, out, _ = lpc(capsys, "run", "--config", tmp_path / "c.toml", "--epochs", "4", "--dry-run", "--json")
    assert code == 0 and json.loads(out) == parsed  # the same config, as JSON


def test_runs_json_lists_the_runs(tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    for name, epochs in (("one", "1"), ("two", "2")):
        assert lpc(capsys, "run", *SYNTH, "--epochs", epochs, "--runs-dir", runs, "--name", name)[0] == 0
    code, out, _ = lpc(capsys, "runs", "--runs-dir", runs, "--json")
    assert code == 0 and out.count("\n") == 1
    listing = json.loads(out)
    assert listing["runs_dir"] == str(runs)
    by_name = {r["name"]: r for r in listing["runs"]}
    assert set(by_name) == {"one", "two"}
    assert by_name["two"]["epochs_done"] == 2 and by_name["two"]["status"] == "finished"
    assert by_name["one"]["dataset"] == "synthetic" and by_name["one"]["preset"] == "lpc"
    code, out, _ = lpc(capsys, "runs", "--runs-dir", runs)
    assert code == 0 and "one" in out and "two" in out
    code, out, _ = lpc(capsys, "runs", "--runs-dir", tmp_path / "none", "--json")
    assert code == 0 and json.loads(out)["runs"] == []


def test_runs_table_keeps_default_names_whole_at_80_columns() -> None:
    run = {"name": "lpc-synthetic-s0-20261128-175433", "preset": "lpc", "dataset": "synthetic",
           "epochs_done": 5, "epochs": 5, "status": "finished", "test_acc": 1.0,
           "separation_ratio": 12.7, "robustness_mean": 0.312}
    for width, with_metrics in ((80, False), (120, True)):
        console = Console(width=width, file=io.StringIO())
        table, left_out = runs_table([run], console)
        console.print(table)
        text = console.file.getvalue()
        assert run["name"] in text and max(map(len, text.splitlines())) <= width
        assert ("12.7" in text and "0.312" in text) == with_metrics == (left_out != ["R", "‖r‖/‖x‖"])
    long = {**run, "name": "sweep-digits/lpc-digits-s3-20261202-024330"}  # a sweep's run: still whole
    console = Console(width=80, file=io.StringIO())
    table, left_out = runs_table([long], console)
    console.print(table)
    assert long["name"] in console.file.getvalue() and "finished" in console.file.getvalue()
    assert left_out == ["R", "‖r‖/‖x‖", "dataset"]


def test_load_run_of_a_cli_run(tmp_path: Path, capsys) -> None:
    code, out, _ = lpc(capsys, "run", *SYNTH, "--epochs", "2", "--runs-dir", tmp_path, "--name", "m",
                       "--json")
    assert code == 0
    run = load_run(tmp_path / "m")
    assert not run.model.training
    acc = (run.model(run.x_test).logits.argmax(1) == run.y_test).float().mean().item()
    assert acc == pytest.approx(json.loads(out)["test_acc"], abs=1e-9)


# --- the installed console script ----------------------------------------------------------------

def test_installed_lpc_script(tmp_path: Path) -> None:
    script = Path(sys.prefix) / "bin" / "lpc"
    assert script.is_file(), f"{script} missing: pip install -e . into the venv"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LPC_RUNS_DIR": str(tmp_path / "env-runs")}
    done = subprocess.run([str(script), "run", *SYNTH, "--epochs", "1", "--name", "sub", "--json"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["status"] == "finished"
    assert (tmp_path / "env-runs" / "sub" / "summary.json").is_file()  # LPC_RUNS_DIR honoured
    assert "Traceback" not in done.stderr
