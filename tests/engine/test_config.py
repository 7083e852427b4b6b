"""The config tree: defaults (appendix C), layering, validation, TOML/JSON."""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from pathlib import Path
from typing import Any

import pytest

from lpc_engine.config import (
    SECTION_TYPES,
    SECTIONS,
    RunConfig,
    flatten,
    from_flat,
    leaf_fields,
    to_dict,
    validate,
)
from lpc_engine.config_io import (
    build_config,
    config_from_dict,
    dumps_toml,
    read_config_file,
    resolve,
)
from lpc_engine.errors import ConfigError, UsageError
from lpc_engine.presets import PRESETS

# ---- defaults: the paper's recipe (appendix C) ----


def test_defaults_are_paper_recipe() -> None:
    cfg = RunConfig()
    assert cfg.epochs == 800
    assert cfg.gamma.gamma_schedule == "exponential"
    assert (cfg.gamma.gamma_init, cfg.gamma.gamma_factor, cfg.gamma.gamma_max) == (1e-2, 1.05, 1e6)
    assert cfg.gamma.gamma_step_epochs == 1
    assert cfg.optim.weight_decay == 5e-5
    assert cfg.optim.lr == 1e-4
    assert (cfg.optim.lr_schedule, cfg.optim.lr_decay_start, cfg.optim.lr_halving_every) == (
        "halving", 250, 50)
    assert cfg.model.classifier_bias is False
    assert cfg.model.preset == "lpc"
    assert cfg.metrics_every == 50  # "recording performance metrics every 50 epochs"
    assert cfg.loss.supcon_temperature == 0.05
    assert cfg.loss.arcface_margin == (0.1, 0.5)
    assert cfg.loss.cosface_margin == (0.05, 0.25)
    assert cfg.loss.margin_scale == (16.0, 64.0)


def test_defaults_validate() -> None:
    assert validate(RunConfig()) == RunConfig()


def test_config_is_frozen() -> None:
    cfg = RunConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.epochs = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.gamma.gamma_max = 3.0  # type: ignore[misc]


def test_pair_fields_are_tuples() -> None:
    loss = build_config(flags={"margin_scale": [8, 32]}).loss
    assert loss.margin_scale == (8.0, 32.0) and isinstance(loss.margin_scale, tuple)
    assert isinstance(RunConfig().loss.arcface_margin, tuple)


# ---- leaf fields ----


def test_leaf_names_unique_across_sections() -> None:
    names = [f.name for f in dataclasses.fields(RunConfig) if f.name not in SECTIONS]
    for section in SECTIONS:
        names += [f.name for f in dataclasses.fields(SECTION_TYPES[section])]
    assert len(names) == len(set(names))
    assert set(names) == set(leaf_fields())


def test_sections_match_run_config() -> None:
    cfg = RunConfig()
    nested = {f.name for f in dataclasses.fields(cfg) if dataclasses.is_dataclass(getattr(cfg, f.name))}
    assert nested == set(SECTIONS) == set(SECTION_TYPES)
    assert all(isinstance(getattr(cfg, s), SECTION_TYPES[s]) for s in SECTIONS)


def test_every_leaf_has_doc() -> None:
    for name, (_, f) in leaf_fields().items():
        doc = f.metadata.get("doc")
        assert isinstance(doc, str) and doc.strip(), name
        assert "\n" not in doc, name


def test_leaf_sections() -> None:
    leaves = leaf_fields()
    assert leaves["gamma_init"][0] == "gamma"
    assert leaves["latent_dim"][0] == "model"
    assert leaves["dataset"][0] == "data"
    assert leaves["lr"][0] == "optim"
    assert leaves["supcon_temperature"][0] == "loss"
    assert leaves["epochs"][0] is None
    assert leaves["device"][0] is None


def test_flatten_and_to_dict_round_trip() -> None:
    cfg = RunConfig()
    nested = to_dict(cfg)
    assert set(nested["loss"]) and isinstance(nested["loss"]["margin_scale"], list)
    assert from_flat(flatten(nested)) == cfg
    json.dumps(nested)  # plain data


def test_from_flat_coerces_int_to_float() -> None:
    cfg = from_flat({"gamma_max": 10, "arcface_margin": [0, 1]})
    assert cfg.gamma.gamma_max == 10.0 and isinstance(cfg.gamma.gamma_max, float)
    assert cfg.loss.arcface_margin == (0.0, 1.0)


# ---- build_config: profiles, presets, layering ----


def test_build_config_without_input_is_digits_profile() -> None:
    cfg = build_config()
    assert cfg.data.dataset == "digits"
    assert cfg.model.backbone == "mlp"
    assert cfg.model.preset == "lpc"
    assert cfg.model.latent_dim == 16
    assert build_config() == build_config({}, {})


@pytest.mark.parametrize(("name", "key", "latent"), [
    ("LPC-WIDE", "lpc-wide", 32), ("lpc-narrow", "lpc-narrow", 8), ("Lpc", "lpc", 16),
    ("LinPen", "linpen", 16), ("NONLINPEN", "nonlinpen", 16), ("LPC-SCL", "lpc-scl", 16)])
def test_preset_names_case_insensitive(name: str, key: str, latent: int) -> None:
    cfg = build_config(flags={"preset": name})
    assert cfg.model.preset == key
    assert cfg.model.latent_dim == latent


@pytest.mark.parametrize(("dataset", "widths"), [
    ("cifar10", (64, 128, 16)), ("cifar100", (128, 256, 32))])
def test_paper_widths_on_cifar(dataset: str, widths: tuple[int, int, int]) -> None:
    got = tuple(build_config(flags={"dataset": dataset, "preset": p}).model.latent_dim
                for p in ("lpc", "lpc-wide", "lpc-narrow"))
    assert got == widths


def test_cifar_profiles_use_paper_backbones() -> None:
    assert build_config(flags={"dataset": "cifar10"}).model.backbone == "resnet18"
    assert build_config(flags={"dataset": "cifar100"}).model.backbone == "resnet50"
    # CIFAR-10 is the defaults unchanged (the paper's recipe)
    c10 = build_config(flags={"dataset": "cifar10"})
    assert (c10.epochs, c10.optim.lr_schedule, c10.gamma.gamma_max) == (800, "halving", 1e6)


@pytest.mark.parametrize("preset", ["lpc-nopen", "scl", "arcface", "cosface", "nopen"])
def test_presets_without_layer_resolve_latent_to_zero(preset: str) -> None:
    assert build_config(flags={"preset": preset}).model.latent_dim == 0
    assert build_config(flags={"preset": preset, "dataset": "cifar10"}).model.latent_dim == 0
    assert build_config(flags={"preset": preset, "latent_dim": 64}).model.latent_dim == 0


def test_explicit_latent_dim_wins_for_presets_with_layer() -> None:
    assert build_config(flags={"latent_dim": 48}).model.latent_dim == 48


def test_a_latent_wider_than_the_metrics_can_hold_is_refused() -> None:
    assert build_config(flags={"latent_dim": 8192}).model.latent_dim == 8192
    with pytest.raises(ConfigError, match=r"latent_dim: must be in \[0, 8192\], got 60016"):
        build_config(flags={"latent_dim": 60016})
    with pytest.raises(ConfigError, match=r"batch_size: must be in \[1, 1048576\], got 0"):  # an int's ends as ints
        build_config(flags={"batch_size": 0})


def test_every_preset_builds() -> None:
    for key in PRESETS:
        assert build_config(flags={"preset": key}).model.preset == key


def test_layering_profile_file_flags() -> None:
    profile_lr = build_config().optim.lr
    assert profile_lr == 3e-3  # digits profile
    file_values = {"optim": {"lr": 0.5}, "model": {"backbone": "cnn"}, "epochs": 7}
    from_file = build_config(file_values)
    assert from_file.optim.lr == 0.5  # file beats profile
    assert from_file.model.backbone == "cnn"
    assert from_file.epochs == 7
    from_flags = build_config(file_values, {"lr": 0.25, "epochs": 9})
    assert from_flags.optim.lr == 0.25  # flag beats file
    assert from_flags.epochs == 9
    assert from_flags.model.backbone == "cnn"  # untouched by flags


def test_none_flags_are_ignored() -> None:
    file_values = {"optim": {"lr": 0.5}}
    every_flag_none = {name: None for name in leaf_fields()}
    assert build_config(file_values, every_flag_none) == build_config(file_values)


def test_dataset_from_file_selects_profile() -> None:
    cfg = build_config({"data": {"dataset": "cifar100"}})
    assert cfg.model.backbone == "resnet50"
    assert cfg.model.latent_dim == 128
    # a flag dataset beats the file's
    cfg = build_config({"data": {"dataset": "cifar100"}}, {"dataset": "cifar10"})
    assert (cfg.data.dataset, cfg.model.backbone) == ("cifar10", "resnet18")


def test_profile_does_not_leak_between_datasets() -> None:
    assert build_config(flags={"dataset": "cifar10"}).data.batch_size == RunConfig().data.batch_size
    assert build_config().data.batch_size == 64
    assert build_config(flags={"profile": "quick"}).data.batch_size == 32


def test_the_quick_profile_is_the_100_epoch_look_and_layers_like_the_default() -> None:
    quick = build_config(flags={"profile": "quick"})
    assert (quick.epochs, quick.gamma.gamma_factor, quick.gamma.gamma_max, quick.data.augment) == (100, 1.2, 10.0, True)
    assert build_config({"profile": "quick"}, {"epochs": 7}).epochs == 7  # from the file; flags still win
    assert build_config({"profile": "quick"}, {"profile": "default"}).epochs == 700
    with pytest.raises(ConfigError, match="'quick' is defined for digits, not synthetic"):
        build_config(flags={"dataset": "synthetic", "profile": "quick"})
    with pytest.raises(ConfigError, match="profile: expected one of default, quick"):
        build_config(flags={"profile": "fast"})


def test_resolve_is_idempotent() -> None:
    cfg = build_config(flags={"preset": "LPC-WIDE", "dataset": "cifar100"})
    assert resolve(cfg) == cfg


# ---- TOML / JSON ----

ROUND_TRIP_CASES: list[dict[str, Any]] = [
    {},
    {"dataset": "cifar100", "preset": "LPC-WIDE"},
    {"dataset": "cifar10", "preset": "arcface", "arcface_margin": [0.2, 0.4],
     "margin_scale": [8, 32.5], "gamma_schedule": "dual-exponential", "gamma_init": 1e-4,
     "gamma_factor": 2.0, "gamma_step_epochs": 5, "device": "cuda:1", "data_dir": 'a "q" \\ b',
     "classifier_bias": True, "lr": 1.5e-7, "seed": 2**31 - 1},
    {"dataset": "synthetic", "gamma_schedule": "cosine", "gamma_ramp_epochs": 3,
     "data_dir": "/données/ö", "penalty_reduction": "mean", "merge_policy": "hold"},
]


@pytest.mark.parametrize("flags", ROUND_TRIP_CASES)
def test_toml_round_trip(flags: dict[str, Any]) -> None:
    cfg = build_config(flags=flags)
    parsed = tomllib.loads(dumps_toml(cfg))
    assert parsed == to_dict(cfg)
    assert build_config(parsed) == cfg


@pytest.mark.parametrize("flags", ROUND_TRIP_CASES)
def test_toml_and_json_files_round_trip(tmp_path: Path, flags: dict[str, Any]) -> None:
    cfg = build_config(flags=flags)
    toml_file = tmp_path / "run.toml"
    toml_file.write_text(dumps_toml(cfg), encoding="utf-8")
    json_file = tmp_path / "run.json"
    json_file.write_text(json.dumps(to_dict(cfg)), encoding="utf-8")
    assert build_config(read_config_file(toml_file)) == cfg
    assert build_config(read_config_file(json_file)) == cfg
    assert config_from_dict(json.loads(json_file.read_text())) == cfg


def test_dumps_toml_layout() -> None:
    text = dumps_toml(RunConfig())
    headers = [line for line in text.splitlines() if line.startswith("[")]
    assert headers == [f"[{s}]" for s in SECTIONS]
    assert text.index("epochs = 800") < text.index("[model]")  # top-level first


def test_toml_round_trip_non_bmp_string() -> None:
    cfg = build_config(flags={"data_dir": "/data/\U0001F600"})
    assert build_config(tomllib.loads(dumps_toml(cfg))) == cfg


def test_handwritten_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('epochs = 12\n[model]\npreset = "LPC-NARROW"\n[gamma]\ngamma_max = 1e3\n')
    cfg = build_config(read_config_file(path))
    assert (cfg.epochs, cfg.model.preset, cfg.model.latent_dim, cfg.gamma.gamma_max) == (
        12, "lpc-narrow", 8, 1000.0)


# ---- validation errors: ConfigError (a UsageError) naming the field ----


def config_error(file_values: dict[str, Any] | None = None,
                 flags: dict[str, Any] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        build_config(file_values, flags)
    return str(info.value)


def test_config_error_is_usage_error() -> None:
    assert issubclass(ConfigError, UsageError)
    assert issubclass(UsageError, ValueError)


def test_unknown_preset_lists_allowed() -> None:
    msg = config_error(flags={"preset": "lpc-huge"})
    assert "preset" in msg and "lpc-huge" in msg
    for key in PRESETS:
        assert key in msg


def test_unknown_backbone_lists_allowed() -> None:
    msg = config_error(flags={"backbone": "vgg"})
    assert "backbone" in msg and "vgg" in msg
    for name in ("mlp", "cnn", "resnet18", "resnet50"):
        assert name in msg


def test_unknown_dataset_lists_allowed() -> None:
    for values, flags in [(None, {"dataset": "imagenet"}), ({"data": {"dataset": "imagenet"}}, None)]:
        msg = config_error(values, flags)
        assert "dataset" in msg and "imagenet" in msg
        for name in ("digits", "cifar10", "cifar100", "mnist"):
            assert name in msg


@pytest.mark.parametrize("epochs", [0, -1])
def test_epochs_must_be_positive(epochs: int) -> None:
    assert config_error(flags={"epochs": epochs}).startswith("epochs:")


def test_gamma_max_below_init() -> None:
    msg = config_error(flags={"gamma_init": 10.0, "gamma_max": 1.0})
    assert msg.startswith("gamma_max:")


def test_gamma_switch_below_init_for_dual() -> None:
    msg = config_error(flags={"gamma_schedule": "dual-exponential", "gamma_init": 10.0,
                              "gamma_switch": 1.0, "gamma_max": 100.0})
    assert msg.startswith("gamma_switch:")


@pytest.mark.parametrize(("name", "value"), [
    ("lr", "0.1"), ("gamma_init", "1e-2"), ("epochs", "10"), ("epochs", 10.0),
    ("epochs", True), ("batch_size", False), ("seed", 1.5), ("augment", 1),
    ("dataset", 3), ("device", 0), ("margin_scale", [1.0]), ("margin_scale", 16.0),
    ("arcface_margin", [0.1, True]), ("cosface_margin", ["a", "b"])])
def test_wrong_types_name_the_field(name: str, value: Any) -> None:
    assert name in config_error(flags={name: value})


@pytest.mark.parametrize("section", ["gamma", "optim"])
def test_wrong_type_from_file(section: str) -> None:
    name = {"gamma": "gamma_max", "optim": "lr"}[section]
    msg = config_error({section: {name: "big"}})
    assert name in msg


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("name", ["lr", "gamma_max", "weight_decay"])
def test_non_finite_floats(name: str, value: float) -> None:
    msg = config_error(flags={name: value})
    assert msg.startswith(f"{name}:")


def test_non_finite_in_pair() -> None:
    assert config_error(flags={"margin_scale": [16.0, math.nan]}).startswith("margin_scale:")


def test_nan_from_json_file(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"gamma": {"gamma_init": NaN}}')
    assert config_error(read_config_file(path)).startswith("gamma_init:")


@pytest.mark.parametrize(("name", "value"), [
    ("lr", 0.0), ("lr", 100.0), ("batch_size", 0), ("latent_dim", -1), ("seed", -1),
    ("gamma_factor", 0.5), ("gamma_step_epochs", 0), ("metrics_every", -1),
    ("arcface_margin", [0.1, 2.0]), ("supcon_temperature", 0.0), ("weight_decay", -1e-5)])
def test_out_of_range(name: str, value: Any) -> None:
    assert config_error(flags={name: value}).startswith(f"{name}:")


@pytest.mark.parametrize(("name", "value"), [
    ("gamma_schedule", "step"), ("lr_schedule", "linear"), ("penalty_reduction", "max"),
    ("merge_policy", "ignore")])
def test_bad_choices_list_allowed(name: str, value: str) -> None:
    msg = config_error(flags={name: value})
    assert msg.startswith(f"{name}:") and value in msg
    for choice in leaf_fields()[name][1].metadata["choices"]:
        assert choice in msg


def test_unknown_top_level_key() -> None:
    assert "'foo'" in config_error({"foo": 1})


def test_unknown_key_in_section() -> None:
    assert "model.foo" in config_error({"model": {"foo": 1}})


def test_key_in_wrong_section() -> None:
    assert "model.gamma_init" in config_error({"model": {"gamma_init": 1.0}})
    # a section's leaf at top level is not accepted either
    assert "gamma_init" in config_error({"gamma_init": 1.0})


def test_section_not_a_table() -> None:
    msg = config_error({"model": "lpc"})
    assert "model" in msg and "table" in msg


def test_unknown_flag() -> None:
    assert "foo" in config_error(flags={"foo": 1})


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "cuda:", "cuda:-1", "CPU", "", "cuda:0:1"])
def test_bad_device(device: str) -> None:
    assert config_error(flags={"device": device}).startswith("device:")


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12", "mps"])
def test_good_device(device: str) -> None:
    assert build_config(flags={"device": device}).device == device


@pytest.mark.parametrize("device", ["cuda:²", "cuda:١"])
def test_unicode_digit_device_rejected(device: str) -> None:
    config_error(flags={"device": device})


def test_huge_int_for_float_field_is_config_error(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"gamma": {"gamma_max": 1' + "0" * 400 + "}}")
    config_error(read_config_file(path))


def test_malformed_toml(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("epochs = = 3\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        read_config_file(path)


def test_malformed_json(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{epochs: 3")
    with pytest.raises(ConfigError, match="cannot parse"):
        read_config_file(path)


def test_json_not_a_table(tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="table"):
        read_config_file(path)


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin.toml"
    path.write_bytes(b'data_dir = "\xe9"\n')
    with pytest.raises(ConfigError):
        read_config_file(path)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        read_config_file(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not found"):
        read_config_file(tmp_path)  # a directory is not a file


def test_config_from_dict_rejects_unknown_keys() -> None:
    nested = to_dict(build_config())
    nested["optim"]["momentum"] = 0.9
    with pytest.raises(ConfigError, match="optim.momentum"):
        config_from_dict(nested)
