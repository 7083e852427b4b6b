"""`lpc sweep` and `lpc report`: the 11-architecture grid on synthetic data,
rerunning an interrupted sweep, the report's tables in three formats."""

from __future__ import annotations

import json
import re

import pytest

from lpc_engine.cli.app import main
from lpc_engine.presets import PRESETS
from lpc_engine.study.report import RunResult, correlation, pearson, pooling_warnings, table_rows
from lpc_engine.study.report_render import cell
from lpc_engine.runs.store import read_events
from lpc_engine.study.sweep import grid
from lpc_engine.training.train import Control, train
from lpc_cli import lpc

FAST = ["--dataset", "synthetic", "--epochs", "3", "--device", "cpu", "--set", "robustness_samples=30"]



@pytest.fixture(scope="module")
def full_sweep(tmp_path_factory):
    """All 11 presets x seeds 0, 1 on synthetic, 3 epochs (about 30 s on 2 cores)."""
    runs = tmp_path_factory.mktemp("sweep")
    code = main(["sweep", "--presets", "all", "--seeds", "0,1", *FAST, "--runs-dir", str(runs), "--name", "all"])
    assert code == 0
    return runs / "all"


@pytest.mark.slow
def test_sweep_all_presets_then_report_gives_eleven_rows(full_sweep, capsys) -> None:
    assert len([d for d in full_sweep.iterdir() if not d.name.startswith(".")]) == 22
    code, out, _ = lpc(capsys, "report", full_sweep, "--format", "json")
    assert code == 0
    report = json.loads(out)
    for table in ("table1", "table2", "table4"):
        rows = report["tables"][table]
        assert [r["preset"] for r in rows] == list(PRESETS)  # the paper's row order
        assert all(r["n"] == 2 for r in rows)
    first = report["tables"]["table1"][0]
    assert first["architecture"] == "LPC" and first["separation_ratio"]["std"] is not None
    assert len(report["correlation"]["points"]) == 22


@pytest.mark.slow
def test_report_json_carries_every_number_of_the_markdown(full_sweep, capsys) -> None:
    _, md, _ = lpc(capsys, "report", full_sweep, "--no-plots")
    _, js, _ = lpc(capsys, "report", full_sweep, "--format", "json")
    report = json.loads(js)
    md_rows = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| architecture")]
    rebuilt = []
    for table, columns in (("table1", 4), ("table2", 2), ("table4", 5)):
        for r in report["tables"][table]:
            keys = [k for k in r if isinstance(r[k], dict)]
            assert len(keys) == columns
            row = _row_from_json(r, keys)
            rebuilt.append(f"| {r['architecture']} | {r['lr']:g} | {r['n']} | "
                           + " | ".join(cell(row, k) for k in keys) + " |")
    assert md_rows == rebuilt
    pearson_md = re.search(r"\(Fig\. 3\): (-?[0-9.]+)", md).group(1)
    assert pearson_md == f"{report['correlation']['pearson']:.3f}"


def _row_from_json(r, keys):
    from lpc_engine.study.report import Row
    return Row(preset=r["preset"], lr=r["lr"], runs=tuple(r["runs"]),
               mean={k: r[k]["mean"] for k in keys if r[k]["mean"] is not None},
               std={k: r[k]["std"] for k in keys if r[k]["std"] is not None})


@pytest.mark.slow
def test_report_csv_and_curves(full_sweep, capsys, tmp_path) -> None:
    code, out, _ = lpc(capsys, "report", full_sweep, "--format", "csv", "--curves-csv", tmp_path / "c.csv")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("architecture,preset,lr,n,separation_ratio_mean")
    assert len(lines) == 12
    curves = (tmp_path / "c.csv").read_text().splitlines()
    assert curves[0] == "architecture,epoch,nc1,nc1_per_dim,gmm_score_mean,gmm_std_mean,gmm_peak_distance_mean"
    assert len(curves) == 1 + 11  # one measured epoch (the last) per architecture
    code, md, _ = lpc(capsys, "report", full_sweep)
    assert "Fig. 3" in md and "\x1b[" not in md  # charts, without colour codes


def test_rerun_finishes_only_what_is_missing(tmp_path, capsys) -> None:
    base = ["--seeds", "0", *FAST, "--runs-dir", tmp_path, "--name", "s"]
    assert lpc(capsys, "sweep", "--presets", "lpc", *base)[0] == 0
    done = (tmp_path / "s" / "lpc-s0" / "events.jsonl").read_text()
    # a run stopped after its first epoch, as a killed or interrupted sweep leaves it
    point = grid({"preset": ["nopen"], "seed": [0]}, None,
                 {"dataset": "synthetic", "epochs": 3, "device": "cpu", "robustness_samples": 30})[0]
    control = Control()
    for event in train(point.cfg, control, run_dir=tmp_path / "s" / "nopen-s0"):
        if getattr(event, "epoch", 0) == 1 and event.kind == "epoch":
            control.stop.set()
    code, out, _ = lpc(capsys, "sweep", "--presets", "lpc,nopen,linpen", *base, "--dry-run")
    assert code == 0 and out.splitlines() == ["lpc-s0\tdone", "nopen-s0\tresume", "linpen-s0\tnew"]
    code, out, _ = lpc(capsys, "sweep", "--presets", "lpc,nopen,linpen", *base, "--json")
    assert code == 0 and json.loads(out)["ran"] == 2
    assert (tmp_path / "s" / "lpc-s0" / "events.jsonl").read_text() == done  # untouched
    rows = read_events(tmp_path / "s" / "nopen-s0" / "events.jsonl")
    assert [r["epoch"] for r in rows if r["event"] == "epoch"] == [1, 2, 3]
    assert [r["status"] for r in rows if r["event"] == "finished"] == ["finished"]


def test_sweep_refuses_a_folder_holding_another_config(tmp_path, capsys) -> None:
    base = ["--presets", "lpc", "--seeds", "0", "--runs-dir", tmp_path, "--name", "s"]
    assert lpc(capsys, "sweep", *base, *FAST)[0] == 0
    code, _, err = lpc(capsys, "sweep", *base, *FAST[:-1], "robustness_samples=40")
    assert code == 2 and "holds a run with another config" in err


@pytest.mark.parametrize("argv, message", [
    (["--presets", "lpcx"], "preset: unknown 'lpcx'"),
    (["--set", "nosuch=1,2"], "--set: unknown field 'nosuch'"),
    (["--set", "gamma_max"], "expected field=v1,v2"),
    (["--seeds", "a,b"], "seed: expected int values"),
    (["--set", "gamma_max=-1"], "gamma_max: must be in"),
])
def test_sweep_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, argv, message) -> None:
    code, _, err = lpc(capsys, "sweep", "--dataset", "synthetic", "--runs-dir", tmp_path, *argv)
    assert code == 2 and message in err and err.count("\n") == 1
    assert not any(tmp_path.iterdir())


def test_report_bad_input(tmp_path, capsys) -> None:
    assert lpc(capsys, "report", tmp_path / "none")[0] == 2
    code, _, err = lpc(capsys, "report", tmp_path)
    assert code == 2 and "no finished runs" in err
    code, _, err = lpc(capsys, "report", tmp_path, "--format", "xml")
    assert code == 2 and "'xml' is not one of 'md', 'csv', 'json'" in err


def result(preset, lr, seed, acc, r=10.0, rob=0.1, **setting):
    return RunResult(name=f"{preset}-lr{lr:g}-s{seed}", preset=preset, lr=lr, seed=seed,
                     values={"test_acc_percent": acc, "separation_ratio": r, "robustness_mean": rob,
                             "gmm_score_min": -acc}, setting={"epochs": 10, **setting})


def test_a_row_pooling_different_settings_or_one_seed_twice_is_flagged() -> None:
    seeds = [result("lpc", 1e-3, s, 90) for s in range(3)]
    assert pooling_warnings(table_rows(seeds)) == []
    mixed = seeds + [result("lpc", 1e-3, 0, 50, **{"epochs": 2, "data.dataset": "cifar10"})]
    (line_settings, line_seeds) = pooling_warnings(table_rows(mixed))
    assert "LPC pools runs that differ in data.dataset, epochs" in line_settings
    assert "the same seed (0)" in line_seeds


def test_the_report_of_a_sweep_warns_of_nothing(full_sweep, capsys, tmp_path) -> None:
    code, _, err = lpc(capsys, "report", full_sweep, "--no-plots")
    assert code == 0 and "warning" not in err
    code, _, err = lpc(capsys, "report", full_sweep, "--curves-csv", tmp_path / "no" / "such" / "c.csv")
    assert code == 2 and err.startswith("lpc: error: --curves-csv: cannot write") and len(err.splitlines()) == 1


def test_a_sweep_takes_the_profile_as_lpc_run_does(tmp_path, capsys) -> None:
    code, _, err = lpc(capsys, "sweep", "--profile", "quick", "--epochs", "1", "--set", "robustness_samples=0",
                       "--runs-dir", tmp_path, "--name", "q")
    assert code == 0, err
    assert json.loads((tmp_path / "q" / "lpc-s0" / "config.json").read_text())["profile"] == "quick"


@pytest.mark.parametrize("extra", [[], ["--dry-run"]])
def test_a_sweep_of_files_with_no_data_dir_exits_2_before_any_point(tmp_path, capsys, extra) -> None:
    code, out, err = lpc(capsys, "sweep", "--dataset", "npz", "--epochs", "1", "--runs-dir", tmp_path, *extra)
    assert code == 2 and "npz needs data_dir" in err and out == "" and not any(tmp_path.iterdir())


def test_a_slurm_sweep_where_there_is_no_slurm_exits_2(tmp_path, capsys, monkeypatch) -> None:
    pytest.importorskip("submitit")
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch on it
    code, _, err = lpc(capsys, "sweep", "--executor", "slurm", "--dataset", "synthetic", "--epochs", "1",
                       "--runs-dir", tmp_path / "runs")
    assert code == 2 and "no sbatch on this machine's PATH" in err and len(err.splitlines()) == 1


def test_the_report_of_unrelated_runs_says_they_are_not_seeds(tmp_path, capsys) -> None:
    for epochs in ("2", "3"):
        assert lpc(capsys, "run", "--dataset", "synthetic", "--epochs", epochs, "--device", "cpu",
                   "--robustness-samples", "10", "--runs-dir", tmp_path, "--name", f"e{epochs}")[0] == 0
    code, out, err = lpc(capsys, "report", tmp_path, "--format", "json")
    assert code == 0 and "pools runs that differ in epochs" in err and "the same seed (0)" in err
    assert len(json.loads(out)["warnings"]) == 2
    assert "Warning: LPC pools runs that differ in epochs" in lpc(capsys, "report", tmp_path, "--no-plots")[1]
    code, out, _ = lpc(capsys, "report", tmp_path / "e2", "--format", "json")  # one run's own folder
    assert code == 0 and [r["runs"] for r in json.loads(out)["tables"]["table1"]] == [["e2"]]


def test_best_lr_keeps_the_best_mean_accuracy_per_architecture() -> None:
    results = [result("lpc", 1e-4, 0, 90), result("lpc", 1e-4, 1, 92),
               result("lpc", 2e-4, 0, 95), result("lpc", 2e-4, 1, 89),  # mean 92 > 91
               result("nopen", 1e-4, 0, 80), result("nopen", 2e-4, 0, 70)]
    rows = table_rows(results, best_lr=True)
    assert [(r.preset, r.lr) for r in rows] == [("lpc", 2e-4), ("nopen", 1e-4)]
    assert rows[0].mean["test_acc_percent"] == 92 and rows[0].std["test_acc_percent"] == pytest.approx(4.2426, 1e-4)
    assert rows[0].mean["gmm_score_min"] == -95  # a minimum over runs, not a mean
    assert len(table_rows(results)) == 4


def test_pearson_known_answers() -> None:
    assert pearson([1, 2, 3, 4], [2, 4, 6, 8]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert pearson([1, 2], [1, 2]) is None and pearson([1, 1, 1], [1, 2, 3]) is None
    corr = correlation([result("lpc", 1e-4, s, 90, r=10.0 * (s + 1), rob=0.1 * (s + 1)) for s in range(3)])
    assert corr["pearson"] == pytest.approx(1.0) and len(corr["points"]) == 3


@pytest.mark.slow
def test_parallel_jobs_run_as_processes(tmp_path, capsys) -> None:
    code, out, _ = lpc(capsys, "sweep", "--presets", "lpc,nopen", "--seeds", "0", "--dataset", "synthetic",
                       "--epochs", "2", "--device", "cpu", "--set", "robustness_samples=20",
                       "--runs-dir", tmp_path, "--name", "p", "--jobs", "2", "--json")
    assert code == 0 and json.loads(out) == {"sweep_dir": str(tmp_path / "p"), "runs": 2, "ran": 2, "failed": [], "taken": []}
    for name in ("lpc-s0", "nopen-s0"):
        assert json.loads((tmp_path / "p" / name / "summary.json").read_text())["status"] == "finished"
    assert (tmp_path / "p" / ".logs" / "lpc-s0.log").is_file()


@pytest.mark.slow
def test_submitit_local_executor_runs_a_small_grid(tmp_path, capsys) -> None:
    pytest.importorskip("submitit")
    code, out, err = lpc(capsys, "sweep", "--executor", "local", "--presets", "lpc,nopen,linpen", "--seeds", "0",
                         "--dataset", "synthetic", "--epochs", "2", "--device", "cpu",
                         "--set", "robustness_samples=20", "--runs-dir", tmp_path, "--name", "sub", "--json")
    assert code == 0, err
    assert json.loads(out) == {"sweep_dir": str(tmp_path / "sub"), "runs": 3, "ran": 3, "failed": [], "taken": []}
    for name in ("lpc-s0", "nopen-s0", "linpen-s0"):
        rows = read_events(tmp_path / "sub" / name / "events.jsonl")
        assert [r["epoch"] for r in rows if r["event"] == "epoch"] == [1, 2]
    assert list((tmp_path / "sub" / ".submitit").glob("*_result.pkl"))
    code, out, _ = lpc(capsys, "sweep", "--executor", "local", "--presets", "lpc,nopen,linpen", "--seeds", "0",
                       "--dataset", "synthetic", "--epochs", "2", "--device", "cpu",
                       "--set", "robustness_samples=20", "--runs-dir", tmp_path, "--name", "sub", "--dry-run")
    assert out.splitlines() == ["lpc-s0\tdone", "nopen-s0\tdone", "linpen-s0\tdone"]


def test_unknown_executor_exits_2(tmp_path, capsys) -> None:
    code, _, err = lpc(capsys, "sweep", "--executor", "pbs", "--dataset", "synthetic", "--runs-dir", tmp_path)
    assert code == 2 and "'--executor': 'pbs' is not one of 'auto', 'local', 'slurm'" in err and not any(tmp_path.iterdir())


def test_sweep_takes_the_runs_dir_from_lpc_runs_dir(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("LPC_RUNS_DIR", str(tmp_path / "from-env"))
    code, out, _ = lpc(capsys, "sweep", "--dataset", "synthetic", "--epochs", "1", "--set",
                       "robustness_samples=0", "--json")
    assert code == 0
    assert json.loads(out)["sweep_dir"] == str(tmp_path / "from-env" / "sweep-synthetic")
    assert (tmp_path / "from-env" / "sweep-synthetic" / "lpc-s0" / "summary.json").is_file()


def test_sweep_with_an_unresolvable_data_dir_is_one_line_and_exit_2(tmp_path, capsys) -> None:
    code, out, err = lpc(capsys, "sweep", "--set", "data_dir=~nosuchuser-lpc/x", "--runs-dir", tmp_path)
    assert code == 2 and out == ""
    assert err.startswith("lpc: error: data_dir: cannot resolve") and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_option_help_comes_from_the_config_docs(capsys) -> None:
    from lpc_engine.config import leaf_fields

    code, out, _ = lpc(capsys, "sweep", "--help")
    flat = " ".join(out.replace("│", " ").split())
    assert code == 0 and "pip install 'lpc-studio[cluster]'" in flat  # not eaten as Rich markup
    code, out, _ = lpc(capsys, "run", "--help")
    flat = " ".join(out.replace("│", " ").split())
    for name in ("gamma_init", "checkpoint_minutes", "precision"):
        doc = leaf_fields()[name][1].metadata["doc"]
        assert (doc[0].upper() + doc[1:]) in flat, name
