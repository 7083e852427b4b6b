"""The TUI's plain parts, without a screen: downsampling, the form model,
the run history, histograms, the export CSV and the `lpc-tui` command line."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lpc_engine.events import EpochEnd, RunStarted
from lpc_tui.cli import main as tui_main
from lpc_tui.downsample import downsample
from lpc_tui.export import epochs_csv
from lpc_tui.form import FormModel, format_value
from lpc_tui.history import RunHistory, history_from_disk
from lpc_tui.run_groups import short_names, table_rows
from lpc_tui.status import clock
from lpc_tui.widgets.histograms import bar_rows, binary_nodes, node_histogram
from scripted import epoch_event, latent_event, write_saved_run


def test_downsample_keeps_ends_and_extremes() -> None:
    xs = list(range(1, 801))
    ys = [math.sin(x / 30) for x in xs]
    ys[400] = 50.0  # a spike must survive
    dx, dy = downsample(xs, ys, 100)
    assert len(dx) <= 100 and dx[0] == 1 and dx[-1] == 800
    assert 50.0 in dy and dx == sorted(dx)
    assert downsample([1, 2], [3, 4], 100) == ([1, 2], [3, 4])


def test_form_reports_typed_and_range_errors_by_field() -> None:
    form = FormModel()
    form.edit("epochs", "ten")
    form.edit("lr", "50")
    cfg, errors = form.check()
    assert cfg is None
    assert errors == {"epochs": "expected a whole number, got 'ten'",
                      "lr": "must be in [1e-08, 10], got 50.0"}


def test_form_cross_field_error_lands_on_its_field() -> None:
    form = FormModel(flags={"dataset": "synthetic"})
    form.edit("gamma_init", "5")
    form.edit("gamma_max", "1")
    assert form.check() == (None, {"gamma_max": "must be >= gamma_init (5), got 1"})


def test_form_layers_file_then_flags_then_edits() -> None:
    form = FormModel(file_values={"epochs": 7, "gamma": {"gamma_factor": 1.1}}, flags={"epochs": 9})
    cfg, errors = form.check()
    assert not errors and cfg.epochs == 9 and cfg.gamma.gamma_factor == 1.1
    form.edit("epochs", "11")
    assert form.check()[0].epochs == 11
    assert form.shown(form.check()[0])["gamma_factor"] == "1.1"


def test_form_precision_and_compile_reach_the_config() -> None:
    form = FormModel()
    assert form.shown(form.check()[0])["compile"] == "False"
    form.edit("precision", "bf16")
    form.edit("compile", "True")
    cfg, errors = form.check()
    assert not errors and cfg.precision == "bf16" and cfg.compile is True
    form.edit("compile", "yes")
    assert "compile" in form.check()[1]


def test_format_value_reads_like_typed() -> None:
    assert [format_value(v) for v in (1e6, 0.01, 1e-5, 3, "lpc")] == ["1e6", "0.01", "1e-5", "3", "lpc"]


def test_history_resumed_run_keeps_rows_before_the_restart() -> None:
    h = RunHistory()
    for e in range(1, 6):
        h.apply(epoch_event(e, 10))
    h.apply(RunStarted(run_dir="runs/a", device="cpu", start_epoch=4, epochs=10, num_params=1,
                       num_train=1, num_test=1))
    assert [r["epoch"] for r in h.rows] == [1, 2, 3] and h.name == "a" and h.status == "running"
    h.apply(epoch_event(4, 10))
    assert h.epoch == 4 and h.eta_seconds() == pytest.approx(6 * 0.5)


def test_history_series_skips_nan_test_accuracy() -> None:
    h = RunHistory()
    h.apply(epoch_event(1, 3))
    h.apply(EpochEnd(**{**epoch_event(2, 3).__dict__, "test_acc": math.nan}))
    assert h.series("test_acc")[0] == [1]


def test_history_from_disk_equals_the_saved_rows(tmp_path) -> None:
    write_saved_run(tmp_path, "a", 4)
    h = history_from_disk(tmp_path / "a")
    assert [r["epoch"] for r in h.rows] == [1, 2, 3, 4] and h.status == "finished"
    assert h.rows[2]["gamma"] == pytest.approx(epoch_event(3, 4).gamma)
    assert h.metrics["separation_ratio"] == 12.5 and h.epochs == 4


def test_node_histogram_is_symmetric_about_the_origin() -> None:
    counts = node_histogram(np.array([-1.0, -1.0, 1.0, 0.25]), bins=4)
    assert counts.tolist() == [2, 0, 1, 1]  # bins [-1,-.5) [-.5,0) [0,.5) [.5,1]
    merged = node_histogram(np.zeros(5), bins=4)
    assert merged.tolist() == [0, 0, 5, 0]  # everything at the origin: the merge failure


def test_bar_rows_scale_the_tallest_bin_to_full_height() -> None:
    top, bottom = bar_rows(np.array([0, 8, 16]))
    assert bottom == " ██" and top == "  █"


def test_binary_node_count_uses_the_peak_distance_threshold() -> None:
    sample = latent_event(3)  # peak distances 2, 3.5, 5, 6.5, ...: 6 of 8 at >= 4
    assert binary_nodes(sample) == 6


def test_epochs_csv_has_a_header_and_one_row_an_epoch() -> None:
    h = RunHistory()
    h.apply(epoch_event(1, 2))
    h.apply(EpochEnd(**{**epoch_event(2, 2).__dict__, "test_acc": math.nan}))
    lines = epochs_csv(h).splitlines()
    assert lines[0].split(",")[:3] == ["epoch", "loss", "ce"] and len(lines) == 3
    assert lines[2].split(",")[7] == ""  # NaN test accuracy stays empty


def test_clock() -> None:
    assert [clock(None), clock(59.6), clock(3725)] == ["—", "1:00", "1:02:05"]


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "nope"], "'--dataset': 'nope' is not one of 'digits', 'synthetic'"),
    (["--preset", "lpcx"], "'--preset': 'lpcx' is not one of 'lpc', 'lpc-wide'"),
    (["--config", "/no/such.toml"], "config: file not found"),
    (["--bogus"], "No such option"),
])
def test_tui_bad_options_exit_2_with_one_line(capsys, argv, message) -> None:
    assert tui_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("lpc-tui: error: ") and message in err and err.count("\n") == 1


def test_lpc_tui_subcommand_runs_the_same_command_line(capfd) -> None:
    """`lpc tui` hands its arguments to `lpc-tui` in a child process."""
    from lpc_engine.cli.app import main as lpc_main
    assert lpc_main(["tui", "--dataset", "nope"]) == 2
    assert "lpc-tui: error: Invalid value for '--dataset': 'nope'" in capfd.readouterr().err


def _listed(name: str, state: str = "finished", acc: float | None = 0.9, mtime: float = 1.0, **extra) -> dict:
    """A row as list_runs gives it."""
    group = name.rsplit("/", 1)[0] if "/" in name else ""
    return {"name": name, "group": group, "state": state, "epochs_done": 5, "epochs": 10, "test_acc": acc,
            "separation_ratio": 2.0, "robustness_mean": None, "preset": "lpc", "dataset": "digits",
            "mtime": mtime, **extra}


def test_a_folder_of_runs_is_one_closed_row_that_opens_into_its_runs() -> None:
    runs = [_listed("alone"), _listed("sweep/a", "running", 0.7, mtime=2.0),
            _listed("sweep/b", "finished", 0.8, mtime=3.0, preset="nopen"), _listed("sweep/c", acc=math.nan)]
    closed = table_rows(runs, opened=set(), marked=["sweep/a"])
    assert [r.key for r in closed] == ["alone", "sweep/"]
    folder = closed[1]
    assert folder.is_group and folder.runs == ("sweep/b", "sweep/a", "sweep/c")  # newest first
    mark, name, state, epochs, acc, ratio, robust, preset, dataset = folder.cells
    assert (mark, name, state, epochs) == (" ", "▸ sweep/ (3)", "1 running", "15/30")
    assert (acc, ratio, robust, preset, dataset) == ("↑0.8", "↑2", "—", "mixed", "digits")  # NaN is no best
    opened = table_rows(runs, opened={"sweep"}, marked=["sweep/a", "sweep/b", "sweep/c"])
    assert [r.key for r in opened] == ["alone", "sweep/", "sweep/b", "sweep/a", "sweep/c"]
    assert opened[1].cells[:2] == ("●", "▾ sweep/ (3)") and opened[3].cells[:2] == ("●", "  a")
    filtered = table_rows(runs, opened=set(), marked=[], filter_text=" B ")  # a filter opens what matches
    assert [r.key for r in filtered] == ["sweep/", "sweep/b"] and filtered[0].cells[1] == "▾ sweep/ (1)"
    assert table_rows([_listed("s/x"), _listed("s/y")], set(), [])[0].cells[2] == "finished"


def test_a_folder_inside_a_folder_follows_its_parent_and_runs_go_by_their_own_names() -> None:
    runs = [_listed("s-b/r4"), _listed("s/t/u/r3"), _listed("s/t/r2"), _listed("s/r1")]
    assert [r.key for r in table_rows(runs, {"s", "s/t"}, [])] == ["s/", "s/r1", "s/t/", "s/t/r2", "s/t/u/", "s-b/"]
    assert short_names(["sweep-a/lpc-s0", "sweep-a/lpc-s1", "top"]) == ["lpc-s0", "lpc-s1", "top"]
    assert short_names(["sweep-a/lpc-s0", "sweep-b/lpc-s0"]) == ["sweep-a/lpc-s0", "sweep-b/lpc-s0"]
