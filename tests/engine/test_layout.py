"""The layout's rules (docs/ARCHITECTURE.md), read from the sources' imports:
no import cycle; the CLI wing (lpc_engine/cli) is imported by nothing in the
core; only the CLI wing and the TUI import typer, rich or plotext; one
module reads events.jsonl, and event kinds are named in events.py only."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# An entry point kept for torchrun users, not part of the core: nothing imports it.
ENTRY_ALIASES = {"lpc_engine.launch"}
FRONT_END_LIBRARIES = ("typer", "rich", "plotext", "textual", "textual_plotext")


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted((ROOT / "lpc_engine").rglob("*.py")) + sorted((ROOT / "lpc_tui").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imported(module: str, path: Path) -> set[str]:
    """Every name `module` imports (top-level and inside functions), absolute."""
    names: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return names


IMPORTS = {m: _imported(m, p) for m, p in MODULES.items()}


def _project_edges() -> dict[str, set[str]]:
    return {m: {n for n in names if n in MODULES and n != m} for m, names in IMPORTS.items()}


def test_no_import_cycle() -> None:
    edges, state, stack = _project_edges(), {}, []

    def visit(m: str) -> None:
        state[m] = "open"
        stack.append(m)
        for n in sorted(edges[m]):
            if state.get(n) == "open":
                cycle = stack[stack.index(n):] + [n]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module)


def _in_cli(module: str) -> bool:
    return module == "lpc_engine.cli" or module.startswith("lpc_engine.cli.")


def test_the_core_never_imports_the_cli_wing() -> None:
    offenders = sorted(f"{m} imports {n}" for m, names in IMPORTS.items()
                       if m.startswith("lpc_engine") and not _in_cli(m) and m not in ENTRY_ALIASES
                       for n in names if _in_cli(n))
    assert offenders == []


def test_the_tui_never_imports_the_cli_wing() -> None:
    offenders = sorted(f"{m} imports {n}" for m, names in IMPORTS.items()
                       if m.startswith("lpc_tui") for n in names if _in_cli(n))
    assert offenders == []


def test_only_the_front_ends_import_typer_rich_or_plotext() -> None:
    offenders = sorted(f"{m} imports {n}" for m, names in IMPORTS.items()
                       if m.startswith("lpc_engine") and not _in_cli(m)
                       for n in names if n.split(".")[0] in FRONT_END_LIBRARIES)
    assert offenders == []


def test_one_module_reads_events_jsonl_and_kinds_are_named_once() -> None:
    kinds = re.findall(r'kind: ClassVar\[str\] = "(\w+)"', (ROOT / "lpc_engine/events.py").read_text())
    assert {"epoch", "metrics", "finished", "failed", "started"} <= set(kinds)
    # A row picked by its kind: row["event"] == "epoch", r.get("event") in ("finished", ...)
    picked = re.compile(r"""["']event["']\]?\)?\s*(?:==|!=|in|not in)\s*\(?["'](?:%s)["']""" % "|".join(kinds))
    matching, parsing = [], []
    for module, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        if module != "lpc_engine.events" and picked.search(text):
            matching.append(module)
        if "json.loads" in text and ("events.jsonl" in text or "events_path" in text):
            parsing.append(module)
    assert matching == [], f"event kinds matched as string literals in {matching}"
    assert parsing == ["lpc_engine.runs.reader"]
