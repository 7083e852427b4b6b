"""The CLI tests' one way to run `lpc` in-process."""

from __future__ import annotations

from lpc_engine.cli.app import main


def lpc(capsys, *argv) -> tuple[int, str, str]:
    """Run `lpc ARGV` in-process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err
