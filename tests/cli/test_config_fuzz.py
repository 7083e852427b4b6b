"""Bad config input, generated: wrong types, out-of-range and non-finite
values, unknown keys, mis-nested sections, in TOML and JSON files, fed to
read_config_file + build_config and to `lpc run --config` (in-process).

Invalid: a ConfigError from the loader; exit 2 from the CLI with one line on
stderr, nothing on stdout, no traceback, nothing written. Valid: a RunConfig;
`lpc run --dry-run` exits 0. Then every ranged field and every flag, one by
one: the message names the field and its allowed range.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import json
import math
import tempfile
import tomllib
from contextlib import redirect_stderr, redirect_stdout
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from lpc_engine.model.backbones import BACKBONES
from lpc_engine.cli.app import main, run
from lpc_engine.config import SECTIONS, leaf_fields, to_flat
from lpc_engine.config_io import _toml_value as engine_toml_value
from lpc_engine.config_io import build_config, read_config_file
from lpc_engine.errors import ConfigError
from lpc_engine.presets import PRESETS, QUICK_PROFILES

# Small and fast if a wrong oracle ever let an invalid config train.
BASE = {"epochs": 1, "robustness_samples": 0, "metrics_every": 0, "latent_sample_size": 0,
        "device": "cpu", "data": {"dataset": "synthetic"}}
LEAVES = leaf_fields()
DEFAULTS = to_flat(build_config(BASE))
NAMES = {"preset": [*PRESETS, *(p.upper() for p in PRESETS)], "backbone": list(BACKBONES),
         "dataset": ["digits", "synthetic", "cifar10", "mnist", "npz"],
         "device": ["auto", "cpu", "cuda", "cuda:0", "cuda:12", "mps"],
         "log_to": ["", "tensorboard", "wandb,mlflow", "TensorBoard, mlflow", "mlflow,,mlflow"]}
# Fields whose bad values are drawn as "x" + text: never a device, nor a tracker.
X_PREFIXED = ("device", "log_to")

# Training sets torch.set_flush_denormal(True) for the whole process, and
# hypothesis refuses to draw subnormal floats once denormals are flushed.
floats = partial(st.floats, allow_subnormal=False)

# Anything a TOML or JSON file can hold.
scalars = (st.integers(-10**6, 10**6) | floats() | st.booleans()
           | st.text(max_size=12) | st.just(10**30))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(min_size=1, max_size=6), inner, max_size=2),
                      max_leaves=6)


def _kind(name: str) -> str:
    f = LEAVES[name][1]
    return f.type if isinstance(f.type, str) else f.type.__name__


def _fits(kind: str, value: Any) -> bool:
    """The loader's type rule: ints pass for floats, never bools for numbers."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return {"int": number and isinstance(value, int), "float": number,
            "str": isinstance(value, str), "bool": isinstance(value, bool),
            "tuple": isinstance(value, list) and len(value) == 2
            and all(_fits("float", v) for v in value)}[kind]


def _place(config: dict, name: str, value: Any) -> None:
    section = LEAVES[name][0]
    (config.setdefault(section, {}) if section else config)[name] = value


# --- one mutation each: (name, value, valid?) or a structural change --------------------

@st.composite
def wrong_type(draw):
    name = draw(st.sampled_from(sorted(LEAVES)))
    value = draw(values.filter(lambda v: not _fits(_kind(name), v)))
    return ("set", name, value, False)


@st.composite
def out_of_range(draw):
    ranged = sorted(n for n, (_, f) in LEAVES.items() if f.metadata["lo"] is not None)
    name = draw(st.sampled_from(ranged))
    lo, hi = LEAVES[name][1].metadata["lo"], LEAVES[name][1].metadata["hi"]
    kind = _kind(name)
    if kind == "int":
        bad = st.integers(max_value=int(lo) - 1) | st.integers(min_value=int(hi) + 1)
    else:
        bad = floats().filter(lambda v: not lo <= v <= hi)  # NaN and inf included
    value = draw(bad)
    if kind == "tuple":
        value = draw(st.permutations([value, (lo + hi) / 2]))
    return ("set", name, value, False)


@st.composite
def bad_name(draw):
    choice_fields = [n for n, (_, f) in LEAVES.items() if f.metadata["choices"]]
    name = draw(st.sampled_from(sorted([*choice_fields, *NAMES])))
    allowed = LEAVES[name][1].metadata["choices"] or NAMES[name]
    value = draw(st.text(max_size=10).filter(lambda s: s not in allowed and s.lower() not in PRESETS))
    return ("set", name, "x" + value if name in X_PREFIXED else value, False)


bad_text = st.builds(lambda a, b: ("set", "data_dir", f"{a}\x00{b}", False),
                    st.text(max_size=5), st.text(max_size=5))


@st.composite
def in_range(draw):
    name = draw(st.sampled_from(sorted(LEAVES)))
    meta, kind = LEAVES[name][1].metadata, _kind(name)
    if name in NAMES or meta["choices"]:
        value = draw(st.sampled_from(list(meta["choices"] or NAMES[name])))
    elif kind == "bool":
        value = draw(st.booleans())
    elif kind == "str":  # data_dir: any plain path text
        value = draw(st.text("abc/._-0", max_size=10))
    elif kind == "int":
        value = draw(st.integers(int(meta["lo"]), int(meta["hi"])))
    else:
        number = floats(meta["lo"], meta["hi"]) | st.integers(math.ceil(meta["lo"]), int(meta["hi"]))
        value = draw(st.lists(number, min_size=2, max_size=2) if kind == "tuple" else number)
    return ("set", name, value, True)


unknown_key = st.builds(lambda section, key: ("unknown", section, key, False),
                        st.sampled_from([None, *SECTIONS]),
                        st.text(min_size=1, max_size=8).filter(lambda k: k not in LEAVES and k not in SECTIONS))
section_not_table = st.builds(lambda s, v: ("section", s, v, False), st.sampled_from(SECTIONS),
                              values.filter(lambda v: not isinstance(v, dict)))
misplaced = st.builds(lambda name: ("misplaced", name, None, False),
                      st.sampled_from(sorted(n for n, (s, _) in LEAVES.items() if s)))
mutations = (st.lists(in_range(), min_size=1, max_size=3)  # mostly valid: the oracle is tested too
             | st.lists(wrong_type() | out_of_range() | bad_name() | bad_text | in_range()
                        | unknown_key | section_not_table | misplaced, min_size=1, max_size=3))


def _apply(config: dict, mutation: tuple) -> None:
    what, a, b, _ = mutation
    if what == "set":
        _place(config, a, b)
    elif what == "unknown":
        (config.setdefault(a, {}) if a else config)[b] = 1
    elif what == "section":
        config[a] = b
    else:  # a section's field at the top level
        config[a] = DEFAULTS[a] if not isinstance(DEFAULTS[a], tuple) else list(DEFAULTS[a])


def _valid(config: dict, muts: list[tuple]) -> bool:
    """The oracle: every mutation valid, and the cross-field rules hold."""
    last = {m[1]: m for m in muts if m[0] == "set"}  # a later value of a field wins
    if any(m[0] != "set" for m in muts) or not all(m[3] for m in last.values()):
        return False
    flat = {**DEFAULTS, **{name: m[2] for name, m in last.items()}}
    if flat["gamma_max"] < flat["gamma_init"]:
        return False
    if flat["profile"] == "quick" and flat["dataset"] not in QUICK_PROFILES:  # presets.dataset_profile
        return False
    return flat["gamma_schedule"] != "dual-exponential" or flat["gamma_switch"] >= flat["gamma_init"]


# --- writing a config file ---------------------------------------------------------------

def _toml_value(v: Any) -> str:
    """The engine's TOML writer, plus the inline tables it refuses to write
    (a fuzzed config may put a table anywhere)."""
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_value(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return engine_toml_value(v)


def to_toml(config: dict) -> str:
    """Scalars first, then one [table] per dict: the layout the loader reads."""
    lines = [f"{_toml_value(k)} = {_toml_value(v)}" for k, v in config.items() if not isinstance(v, dict)]
    for key, table in ((k, v) for k, v in config.items() if isinstance(v, dict)):
        lines += [f"[{_toml_value(key)}]", *(f"{_toml_value(k)} = {_toml_value(v)}" for k, v in table.items())]
    return "\n".join(lines) + "\n"


def lpc(*argv: Any) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def _assert_refused(code: int, out: str, err: str) -> None:
    assert code == 2, (code, err)
    assert out == "" and "Traceback" not in err
    assert err.startswith("lpc: error: ") and err.count("\n") == 1 and err.endswith("\n"), repr(err)


# --- the generated configs ---------------------------------------------------------------

@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(muts=mutations, fmt=st.sampled_from(["toml", "json"]))
def test_generated_configs_are_refused_cleanly_or_accepted(muts: list[tuple], fmt: str) -> None:
    config = json.loads(json.dumps(BASE))
    for mutation in sorted(muts, key=lambda m: m[0] == "section"):  # a table made a scalar: last
        _apply(config, mutation)
    valid = _valid(config, muts)
    event(f"valid: {valid}")
    with tempfile.TemporaryDirectory() as tmp:
        path, runs = Path(tmp) / f"c.{fmt}", Path(tmp) / "runs"
        path.write_text(to_toml(config) if fmt == "toml" else json.dumps(config), encoding="utf-8")
        try:
            cfg = build_config(read_config_file(path))
        except ConfigError as exc:
            assert not valid, f"refused a valid config: {exc}"
            assert "\n" not in str(exc).strip()
        else:
            assert valid, f"accepted an invalid config: {config}"
            assert dataclasses.is_dataclass(cfg)
        args = ["run", "--config", path, "--runs-dir", runs, "--name", "r"]
        code, out, err = lpc(*args, *(["--dry-run"] if valid else []))
        if valid:
            assert code == 0, err
            tomllib.loads(out)
        else:
            _assert_refused(code, out, err)
        assert not runs.exists()


# --- every field and every flag, one by one ----------------------------------------------

RANGED = sorted(n for n, (_, f) in LEAVES.items() if f.metadata["lo"] is not None and _kind(n) != "tuple")
FLAGS = sorted(n for n in set(inspect.signature(run).parameters) & set(LEAVES)
               if _kind(n) != "bool")  # --download/--no-download: a switch takes no value


def _range_text(name: str) -> str:
    """A field's range as its error gives it: an int field's ends as ints."""
    meta = LEAVES[name][1].metadata
    if _kind(name) == "int":
        return f"[{int(meta['lo'])}, {int(meta['hi'])}]"
    return f"[{meta['lo']:g}, {meta['hi']:g}]"


def _too_big(name: str) -> Any:
    hi = LEAVES[name][1].metadata["hi"]
    return int(hi) + 1 if _kind(name) == "int" else hi * 10 + 1


@pytest.mark.parametrize("name", RANGED)
def test_every_ranged_field_names_itself_and_its_range(name: str, tmp_path: Path) -> None:
    config = json.loads(json.dumps(BASE))
    _place(config, name, _too_big(name))
    path = tmp_path / "c.toml"
    path.write_text(to_toml(config))
    code, out, err = lpc("run", "--config", path, "--runs-dir", tmp_path / "runs")
    _assert_refused(code, out, err)
    assert err.startswith(f"lpc: error: {name}: ") and _range_text(name) in err, err
    assert not (tmp_path / "runs").exists()


CHOICE_FLAGS = ("preset", "dataset", "backbone", "profile", "precision", "data_placement")


@pytest.mark.parametrize("name", FLAGS)
def test_every_flag_is_validated(name: str, tmp_path: Path) -> None:
    """A value the flag's type accepts but the field refuses, or a wrong type."""
    meta, kind = LEAVES[name][1].metadata, _kind(name)
    flag = "--" + name.replace("_", "-")
    bad = "x-not-allowed" if kind == "str" else _too_big(name) if meta["lo"] is not None else None
    dataset = "synthetic"
    if name == "data_dir":  # checked when the data loads, before anything is written
        bad, dataset = "/nonexistent/lpc-data", "cifar10"
    assert bad is not None, name
    args = ["run", "--dataset", dataset, "--runs-dir", tmp_path / "runs", "--name", "r"]
    code, out, err = lpc(*args, flag, bad)
    _assert_refused(code, out, err)
    if name in CHOICE_FLAGS:  # Typer's own check, listing the choices
        assert f"'{flag}'" in err and "is not one of" in err, err
    elif name != "data_dir":
        assert err.startswith(f"lpc: error: {name}: "), err
    if meta["lo"] is not None:
        assert _range_text(name) in err
    if kind in ("int", "float"):
        code, out, err = lpc(*args, flag, "abc")
        _assert_refused(code, out, err)
        assert flag in err
    assert not (tmp_path / "runs").exists()
