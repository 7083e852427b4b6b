"""The command line's conventions: --version, shell completion, choices
checked and listed by Typer, and the package's metadata."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from importlib.metadata import metadata
from pathlib import Path

import lpc_engine
from lpc_engine.config import PRECISIONS
from lpc_tui.cli import main as tui_main
from tests.cli.lpc_cli import lpc

ROOT = Path(__file__).resolve().parents[2]


def test_version_of_both_commands(capsys) -> None:
    assert lpc(capsys, "--version") == (0, f"lpc {lpc_engine.__version__}\n", "")
    assert tui_main(["--version"]) == 0
    assert capsys.readouterr().out == f"lpc-tui {lpc_engine.__version__}\n"


def test_version_is_the_installed_distributions() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert lpc_engine.__version__ == declared


def test_a_bad_choice_is_refused_by_typer_listing_the_choices(capsys, tmp_path) -> None:
    code, out, err = lpc(capsys, "run", "--precision", "fp16", "--runs-dir", tmp_path)
    assert code == 2 and out == ""
    assert all(f"'{p}'" in err for p in PRECISIONS) and err.count("\n") == 1
    code, _, err = lpc(capsys, "run", "--preset", "LPC-Wide", "--dry-run")  # names match in any case
    assert code == 0
    assert lpc(capsys, "run", "--help")[1].count("fp32|bf16") == 1  # listed where the flag is


def test_shell_completion_offers_the_commands_and_a_flags_choices() -> None:
    def complete(words: str, cword: int) -> list[str]:
        env = {**os.environ, "_LPC_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
        done = subprocess.run([sys.executable, "-m", "lpc_engine.cli"], env=env, capture_output=True,
                              text=True, timeout=60)
        return done.stdout.split()
    assert {"run", "runs"} <= set(complete("lpc ru", 1))
    assert complete("lpc run --precision ", 3) == list(PRECISIONS)


def test_package_metadata_names_licence_authors_and_urls() -> None:
    meta = metadata("lpc-studio")
    assert meta["License-Expression"] == "MIT" or meta["License"] == "MIT"
    assert meta["Author"] or meta["Author-email"]
    assert any("luigisbailo/lpc" in url for url in meta.get_all("Project-URL") or [])
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
