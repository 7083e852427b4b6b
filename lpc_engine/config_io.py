"""Build a RunConfig from its layers, and read/write it as TOML or JSON.

Layers, last wins: defaults < dataset profile < config file < flags.
Only data formats are read (TOML, JSON): a config never executes anything.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path
from typing import Any

from lpc_engine.model.backbones import BACKBONES
from lpc_engine.config import PROFILES, SECTIONS, RunConfig, flatten, from_flat, short_repr, to_dict, validate
from lpc_engine.data.datasets import DATASETS
from lpc_engine.errors import ConfigError
from lpc_engine.presets import dataset_profile, get_preset, preset_width


def build_config(file_values: dict[str, Any] | None = None,
                 flags: dict[str, Any] | None = None) -> RunConfig:
    """The resolved, validated config of a run.

    file_values: nested dict as read from a TOML/JSON file (or None).
    flags: {leaf field name: value}, e.g. {"gamma_init": 0.01}; None values
    are ignored so a CLI can pass every option through.
    """
    from_file = flatten(file_values or {}, where="config file")
    from_flags = {k: v for k, v in (flags or {}).items() if v is not None}
    dataset = from_flags.get("dataset", from_file.get("dataset", RunConfig().data.dataset))
    if dataset not in DATASETS:
        raise ConfigError(f"dataset: unknown {short_repr(dataset)}; allowed: {', '.join(DATASETS)}")
    profile = from_flags.get("profile", from_file.get("profile", RunConfig().profile))
    if profile not in PROFILES:
        raise ConfigError(f"profile: expected one of {', '.join(PROFILES)}, got {short_repr(profile)}")
    flat = {**dataset_profile(dataset, profile), **from_file, **from_flags}
    return resolve(from_flat(flat))


def resolve(cfg: RunConfig) -> RunConfig:
    """Validate, normalise names and fill the automatic fields (latent_dim)."""
    validate(cfg)
    preset = get_preset(cfg.model.preset)
    if cfg.model.backbone not in BACKBONES:
        raise ConfigError(f"backbone: unknown {short_repr(cfg.model.backbone)}; allowed: {', '.join(BACKBONES)}")
    if cfg.data.dataset not in DATASETS:
        raise ConfigError(f"dataset: unknown {short_repr(cfg.data.dataset)}; allowed: {', '.join(DATASETS)}")
    latent_dim = cfg.model.latent_dim or preset_width(preset, cfg.data.dataset)
    if not preset.width:
        latent_dim = 0  # no added layer: the latent is the backbone's output
    model = dataclasses.replace(cfg.model, preset=preset.name.lower(), latent_dim=latent_dim)
    return dataclasses.replace(cfg, model=model)


def config_from_dict(nested: dict[str, Any]) -> RunConfig:
    """A saved run's config (config.json) back into a RunConfig."""
    return resolve(from_flat(flatten(nested, where="config.json")))


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Nested values of a .toml or .json config file, or a ConfigError.
    Data formats only: nothing in a config file is ever executed."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config: file not found: {path}")
    kind = path.suffix.lower()
    if kind not in (".toml", ".json"):
        raise ConfigError(f"config: {path} must be a .toml or .json file")
    try:
        text = path.read_text(encoding="utf-8")
        values = json.loads(text) if kind == ".json" else tomllib.loads(text)
    except OSError as exc:
        raise ConfigError(f"config: cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # TOML and JSON syntax, UTF-8, integers past 4300 digits
        raise ConfigError(f"config: cannot parse {path}: {exc}") from None
    except RecursionError:
        raise ConfigError(f"config: cannot parse {path}: nested too deeply") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config: {path} must hold a table of fields")
    return values


def dumps_toml(cfg: RunConfig) -> str:
    """The config as TOML: top-level fields first, then one table a section."""
    data = to_dict(cfg)
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if k not in SECTIONS]
    for section in SECTIONS:
        lines += ["", f"[{section}]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in data[section].items()]
    return "\n".join(lines) + "\n"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        # A JSON string is a TOML basic string once non-ASCII stays literal
        # (JSON would write surrogate pairs, which TOML rejects) and DEL is escaped.
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")
