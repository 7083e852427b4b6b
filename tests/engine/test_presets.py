"""The paper's 11 architectures (Table III), widths (appendix C) and the
per-dataset profiles."""

from __future__ import annotations

import pytest

from lpc_engine.model.backbones import BACKBONES
from lpc_engine.config import from_flat, leaf_fields, validate
from lpc_engine.data.datasets import DATASETS
from lpc_engine.errors import ConfigError
from lpc_engine.model.network import HEADS
from lpc_engine.presets import (
    DATASET_PROFILES,
    QUICK_PROFILES,
    PRESETS,
    WIDTHS,
    get_preset,
    preset_width,
)

TABLE_III_NAMES = ["LPC", "LPC-WIDE", "LPC-NARROW", "LPC-SCL", "LPC-NoPen", "LinPen",
                   "NonlinPen", "SCL", "ArcFace", "CosFace", "NoPen"]

# name: (head, width, penalty, loss), read off Table III and appendix C
TABLE_III = {
    "LPC": ("linear", "intermediate", True, "ce"),
    "LPC-WIDE": ("linear", "wide", True, "ce"),
    "LPC-NARROW": ("linear", "narrow", True, "ce"),
    "LPC-SCL": ("linear", "intermediate", True, "ce+supcon"),
    "LPC-NoPen": ("none", "", True, "ce"),
    "LinPen": ("linear", "intermediate", False, "ce"),
    "NonlinPen": ("nonlinear", "intermediate", False, "ce"),
    "SCL": ("none", "", False, "ce+supcon"),
    "ArcFace": ("cosine", "", False, "arcface"),
    "CosFace": ("cosine", "", False, "cosface"),
    "NoPen": ("none", "", False, "ce"),
}


def test_exactly_the_eleven_presets_of_table_iii() -> None:
    assert len(PRESETS) == 11
    assert sorted(p.name for p in PRESETS.values()) == sorted(TABLE_III_NAMES)
    assert set(PRESETS) == {n.lower() for n in TABLE_III_NAMES}
    assert all(key == p.name.lower() for key, p in PRESETS.items())


@pytest.mark.parametrize("name", TABLE_III_NAMES)
def test_preset_matches_table_iii(name: str) -> None:
    p = get_preset(name)
    assert (p.head, p.width, p.penalty, p.loss) == TABLE_III[name]


def test_lpc_family_is_linear_with_penalty() -> None:
    for p in PRESETS.values():
        if p.name.startswith("LPC") and p.name != "LPC-NoPen":
            assert p.head == "linear" and p.penalty and p.width, p.name


def test_penalty_presets() -> None:
    with_penalty = {p.name for p in PRESETS.values() if p.penalty}
    assert with_penalty == {"LPC", "LPC-WIDE", "LPC-NARROW", "LPC-SCL", "LPC-NoPen"}


def test_supcon_presets() -> None:
    assert {p.name for p in PRESETS.values() if "supcon" in p.loss} == {"SCL", "LPC-SCL"}


def test_added_layer_iff_head_adds_one() -> None:
    # appendix C: LPC-NoPen, NoPen, SCL, ArcFace, CosFace have no added layer
    no_layer = {p.name for p in PRESETS.values() if not p.width}
    assert no_layer == {"LPC-NoPen", "NoPen", "SCL", "ArcFace", "CosFace"}
    for p in PRESETS.values():
        assert (p.head in ("linear", "nonlinear")) == bool(p.width), p.name


def test_heads_and_losses_are_known() -> None:
    for p in PRESETS.values():
        assert p.head in HEADS, p.name
        assert p.loss in ("ce", "ce+supcon", "arcface", "cosface"), p.name
        assert p.width in ("intermediate", "wide", "narrow", ""), p.name


def test_margin_losses_use_cosine_head_without_penalty() -> None:
    for name, loss in (("ArcFace", "arcface"), ("CosFace", "cosface")):
        p = get_preset(name)
        assert (p.head, p.loss, p.penalty) == ("cosine", loss, False)


def test_every_preset_has_one_line_description() -> None:
    for p in PRESETS.values():
        assert p.description.strip(), p.name
        assert "\n" not in p.description, p.name
        assert len(p.description) <= 80, p.name


def test_presets_are_frozen() -> None:
    import dataclasses
    with pytest.raises(dataclasses.FrozenInstanceError):
        PRESETS["lpc"].penalty = False  # type: ignore[misc]


@pytest.mark.parametrize("name", ["lpc", "LPC", "Lpc-Wide", "lpc-nopen", "ARCFACE", "nonlinpen"])
def test_get_preset_case_insensitive(name: str) -> None:
    assert get_preset(name) is PRESETS[name.lower()]


@pytest.mark.parametrize("name", ["", "lpc_wide", "resnet18", "LPC WIDE"])
def test_get_preset_unknown_lists_allowed(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        get_preset(name)
    msg = str(info.value)
    assert msg.startswith("preset:")
    assert all(key in msg for key in PRESETS)


# ---- widths ----


def test_paper_widths() -> None:
    # appendix C: intermediate/wide/narrow = 64/128/16 (CIFAR-10), 128/256/32 (CIFAR-100)
    assert WIDTHS["cifar10"] == (64, 128, 16)
    assert WIDTHS["cifar100"] == (128, 256, 32)


def test_widths_cover_every_dataset_and_are_ordered() -> None:
    assert set(WIDTHS) == set(DATASETS)
    for dataset, (intermediate, wide, narrow) in WIDTHS.items():
        assert narrow < intermediate < wide, dataset
        assert wide == 2 * intermediate, dataset
        assert narrow >= 1, dataset


@pytest.mark.parametrize(("dataset", "lpc", "wide", "narrow"), [
    ("cifar10", 64, 128, 16), ("cifar100", 128, 256, 32), ("digits", 16, 32, 8)])
def test_preset_width(dataset: str, lpc: int, wide: int, narrow: int) -> None:
    assert preset_width(get_preset("lpc"), dataset) == lpc
    assert preset_width(get_preset("lpc-scl"), dataset) == lpc
    assert preset_width(get_preset("linpen"), dataset) == lpc
    assert preset_width(get_preset("nonlinpen"), dataset) == lpc
    assert preset_width(get_preset("lpc-wide"), dataset) == wide
    assert preset_width(get_preset("lpc-narrow"), dataset) == narrow


def test_preset_width_zero_without_layer() -> None:
    for p in PRESETS.values():
        if not p.width:
            assert all(preset_width(p, d) == 0 for d in DATASETS), p.name


def test_preset_width_unknown_dataset_falls_back() -> None:
    assert preset_width(get_preset("lpc"), "something-else") == WIDTHS["npz"][0]


# ---- dataset profiles ----


def test_profiles_cover_every_dataset() -> None:
    assert set(DATASET_PROFILES) == set(DATASETS)


def test_cifar10_profile_is_the_defaults() -> None:
    assert DATASET_PROFILES["cifar10"] == {}
    assert DATASET_PROFILES["cifar100"] == {"backbone": "resnet50"}


@pytest.mark.parametrize("dataset", sorted(DATASET_PROFILES))
def test_profile_is_valid_config(dataset: str) -> None:
    profile = DATASET_PROFILES[dataset]
    leaves = leaf_fields()
    assert all(key in leaves for key in profile), dataset
    assert "dataset" not in profile and "preset" not in profile
    cfg = validate(from_flat({**profile, "dataset": dataset}))
    assert cfg.model.backbone in BACKBONES


def test_digits_profile_values() -> None:
    # presets.py and docs/REPRODUCING.md: the measured digits recipes
    p = DATASET_PROFILES["digits"]
    assert p["backbone"] == "mlp" and p["augment"] is False and p["batch_size"] == 64
    assert (p["gamma_factor"], p["gamma_step_epochs"], p["gamma_max"]) == (1.046, 2, 3e3)
    assert (p["lr_schedule"], p["lr_decay_start"], p["epochs"]) == ("cosine", 140, 700)
    assert p["penalty_reduction"] == "sum"
    quick = QUICK_PROFILES["digits"]
    assert (quick["gamma_factor"], quick["gamma_max"], quick["epochs"]) == (1.2, 10.0, 100)
