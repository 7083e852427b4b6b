"""`lpc run --precision` and `--compile/--no-compile`: flags that map 1:1
to the config fields, checked like every other flag, changeable on resume."""

from __future__ import annotations

import tomllib
from pathlib import Path

from lpc_cli import lpc

SYNTH = ["--dataset", "synthetic", "--device", "cpu", "--robustness-samples", "0"]


def test_flags_reach_the_config(capsys) -> None:
    code, out, _ = lpc(capsys, "run", *SYNTH, "--precision", "bf16", "--compile", "--dry-run")
    assert code == 0
    assert tomllib.loads(out)["precision"] == "bf16" and tomllib.loads(out)["compile"] is True
    code, out, _ = lpc(capsys, "run", *SYNTH, "--no-compile", "--dry-run")
    assert (tomllib.loads(out)["precision"], tomllib.loads(out)["compile"]) == ("fp32", False)


def test_bad_precision_exits_2_with_one_line(tmp_path: Path, capsys) -> None:
    code, out, err = lpc(capsys, "run", *SYNTH, "--precision", "fp16", "--runs-dir", tmp_path / "runs")
    assert code == 2 and out == ""
    assert err == ("lpc: error: Invalid value for '--precision': 'fp16' is not one of 'fp32', 'bf16'. "
                   "(see lpc --help)\n")
    assert not (tmp_path / "runs").exists()


def test_resume_may_switch_to_bf16_but_not_change_the_lr(tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    base = ["run", *SYNTH, "--runs-dir", runs, "--name", "r"]
    assert lpc(capsys, *base, "--epochs", "1")[0] == 0
    code, _, err = lpc(capsys, *base, "--epochs", "2", "--precision", "bf16", "--resume")
    assert code == 0, err
    code, _, err = lpc(capsys, *base, "--epochs", "3", "--lr", "0.5", "--resume")
    assert code == 2
    assert "only --epochs, --device, --precision, --compile, --data-placement, --loader-workers, --log-to may change" in err
