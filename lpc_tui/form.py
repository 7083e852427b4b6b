"""The configure pane's model: what the user typed, checked field by field.

Layers as in `lpc run` (config_io.build_config): defaults < the dataset's
profile < the --config file < the command line < what the user edits here.
Fields the user has not touched follow the layers, so picking another
dataset brings that dataset's recipe (epochs, gamma cap, ...) along.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lpc_engine.model.backbones import BACKBONES
from lpc_engine.config import (GAMMA_CAPS, GAMMA_SCHEDULES, LR_SCHEDULES, MERGE_POLICIES, PRECISIONS,
                               PLACEMENTS, PROFILES, RunConfig, check_range, leaf_fields,
                               to_flat)
from lpc_engine.config_io import build_config
from lpc_engine.data.datasets import DATASETS, EMBEDDED
from lpc_engine.errors import ConfigError
from lpc_engine.presets import PRESETS


@dataclass(frozen=True)
class FormField:
    """One field of the form; its label and help are the config field's (config.py)."""

    name: str  # the config leaf name
    choices: tuple[tuple[str, str], ...] = ()  # (value, shown text); empty = typed in

    @property
    def label(self) -> str:
        return leaf_fields()[self.name][1].metadata.get("label") or self.name

    @property
    def help(self) -> str:
        return leaf_fields()[self.name][1].metadata["doc"]


def _presets() -> tuple[tuple[str, str], ...]:
    return tuple((key, f"{p.name:<10} {p.description}") for key, p in PRESETS.items())


def _plain(values: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tuple((v, v) for v in values)


FORM_FIELDS: tuple[FormField, ...] = (
    FormField("preset", _presets()),
    FormField("dataset", _plain(DATASETS)),
    FormField("profile", _plain(PROFILES)),
    FormField("data_dir"),
    FormField("download", (("False", "no"), ("True", "yes: torchvision fetches it"))),
    FormField("backbone", _plain(BACKBONES)),
    FormField("latent_dim"),
    FormField("epochs"),
    FormField("batch_size"),
    FormField("lr"),
    FormField("lr_schedule", _plain(LR_SCHEDULES)),
    FormField("seed"),
    FormField("gamma_schedule", _plain(GAMMA_SCHEDULES)),
    FormField("gamma_init"),
    FormField("gamma_factor"),
    FormField("gamma_step_epochs"),
    FormField("gamma_max"),
    FormField("gamma_cap", _plain(GAMMA_CAPS)),
    FormField("gamma_cap_factor"),
    FormField("merge_policy", _plain(MERGE_POLICIES)),
    FormField("precision", _plain(PRECISIONS)),
    FormField("compile", (("False", "no"), ("True", "torch.compile"))),
    FormField("data_placement", _plain(PLACEMENTS)),
    FormField("image_size"),
    FormField("log_to"),  # free text, checked by the config: any of TRACKERS, comma-separated
)
FIELD_NAMES = tuple(f.name for f in FORM_FIELDS)


@dataclass
class FormModel:
    """Edits over fixed base layers; `check()` gives the config or the errors."""

    file_values: dict[str, Any] | None = None
    flags: dict[str, Any] = field(default_factory=dict)
    edits: dict[str, str] = field(default_factory=dict)
    resolved: RunConfig | None = None  # the last config the layers gave, shown while a field is wrong

    def edit(self, name: str, raw: str) -> None:
        self.edits[name] = raw.strip()

    def check(self) -> tuple[RunConfig | None, dict[str, str]]:
        """The resolved config and {field: reason} for every invalid field
        ("" for an error that belongs to no field of the form)."""
        errors: dict[str, str] = {}
        parsed: dict[str, Any] = {}
        for name, raw in self.edits.items():
            try:
                parsed[name] = parse_field(name, raw)
            except ConfigError as exc:
                errors[name] = _reason(name, str(exc))
        if errors:
            return None, errors
        try:
            cfg = build_config(self.file_values, {**self.flags, **parsed})
        except ConfigError as exc:
            name = str(exc).split(":", 1)[0]
            key = name if name in FIELD_NAMES else ""
            return None, {key: _reason(name, str(exc)) if key else str(exc)}
        self.resolved = cfg
        if cfg.data.dataset not in EMBEDDED and not cfg.data.data_dir:
            return None, {"data_dir": f"{cfg.data.dataset} is read from a folder: give its data dir "
                                      "(and download: yes to fetch it there)"}
        return _absolute_data_dir(cfg), {}

    def shown(self, cfg: RunConfig | None) -> dict[str, str]:
        """The text each field shows: the user's edit, or the resolved value."""
        cfg = cfg or self.resolved
        base = to_flat(cfg) if cfg is not None else {}
        return {name: self.edits.get(name, format_value(base.get(name, ""))) for name in FIELD_NAMES}


def _absolute_data_dir(cfg: RunConfig) -> RunConfig:
    """Runs are resumed and loaded from anywhere: keep the data path absolute,
    as `lpc run` does (a path that cannot be resolved stays as typed)."""
    try:
        path = str(Path(cfg.data.data_dir).expanduser().resolve()) if cfg.data.data_dir else ""
    except (OSError, RuntimeError, ValueError):
        return cfg
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_dir=path))


def parse_field(name: str, raw: str) -> Any:
    """The typed value of one field's text, range-checked, or a ConfigError."""
    section_field = leaf_fields()[name][1]
    kind = section_field.type if isinstance(section_field.type, str) else section_field.type.__name__
    try:
        value: Any = {"int": int, "float": float, "bool": _bool}.get(kind, str)(raw)
    except ValueError:
        want = "a whole number" if kind == "int" else "a number"
        raise ConfigError(f"{name}: expected {want}, got {raw!r}") from None
    check_range(name, section_field.metadata, value)
    return value


def _bool(raw: str) -> bool:
    if raw not in ("True", "False"):
        raise ValueError(raw)
    return raw == "True"


def format_value(value: Any) -> str:
    """Numbers as a researcher types them: 0.01, 1e+06 -> 1e6."""
    if isinstance(value, float):
        text = f"{value:g}"
        return text.replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")
    return str(value)


def _reason(name: str, message: str) -> str:
    """The message without its leading 'field: '."""
    prefix = f"{name}: "
    return message[len(prefix):] if message.startswith(prefix) else message
