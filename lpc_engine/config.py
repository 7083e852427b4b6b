"""One tree of frozen dataclasses: everything a run needs, saved with the run.

Leaf names are unique across the tree, so a CLI flag maps 1:1 to a field
(`--gamma-init` -> `gamma.gamma_init`) and a TOML file mirrors the tree
(`[gamma] gamma_init = 0.01`). Each field carries its meaning and units in
its metadata ("doc"), and its allowed range, which `validate` enforces.

Layers, last wins: dataclass defaults (the paper's CIFAR-10 recipe,
appendix C) < the dataset's profile (presets.dataset_profile: its default
or its quick recipe, as the `profile` field says) < the TOML file < the flags.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from lpc_engine.errors import ConfigError

GAMMA_SCHEDULES = ("exponential", "dual-exponential", "linear", "cosine", "constant")
LR_SCHEDULES = ("constant", "halving", "cosine")
REDUCTIONS = ("sum", "mean")
MERGE_POLICIES = ("warn", "pause", "hold")
GAMMA_CAPS = ("none", "weight-norm")
PROFILES = ("default", "quick")
PRECISIONS = ("fp32", "bf16")
PLACEMENTS = ("auto", "resident", "stream")
TRACKERS = ("tensorboard", "wandb", "mlflow")


def _f(default: Any, doc: str, lo: float | None = None, hi: float | None = None,
       choices: tuple[str, ...] | None = None, label: str = "") -> Any:
    """A field: `doc` is its meaning and units (the CLI's help, the TUI's
    help), `label` its short name in the TUI's form (default: the field's
    name), lo/hi and choices what `validate` allows."""
    meta = {"doc": doc, "lo": lo, "hi": hi, "choices": choices, "label": label}
    if isinstance(default, tuple):
        return field(default_factory=lambda: default, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ModelConfig:
    preset: str = _f("lpc", "architecture of the paper's Table III")
    backbone: str = _f("resnet18", "feature extractor h(x)")
    # At most 8192: the metrics hold d x d float64 matrices (Sigma_W: 0.5 GB at
    # 8192, 34 GB at 65536, which ended runs in an allocation failure); the
    # paper's widest is 256.
    latent_dim: int = _f(0, "penultimate width d; 0 = the preset's width for the dataset", 0, 8192,
                         label="width d")
    classifier_bias: bool = _f(False, "bias of the last classifier (zero in the paper, app. C)")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = _f("digits", "dataset name")
    data_dir: str = _f("", "folder of a torchvision dataset, or the .npz file", label="data dir")
    download: bool = _f(False, "let torchvision download the dataset into data_dir", label="download")
    augment: bool = _f(True, "random crop (and flip where it fits), app. C")
    batch_size: int = _f(128, "samples per optimizer step", 1, 1 << 20, label="batch")
    image_size: int = _f(32, "imagefolder: every image is resized to image_size x image_size pixels",
                         4, 4096, label="img size")


@dataclass(frozen=True)
class GammaConfig:
    gamma_schedule: str = _f("exponential", "how gamma grows over epochs", choices=GAMMA_SCHEDULES,
                             label="γ sched.")
    gamma_init: float = _f(1e-2, "gamma at epoch 1 (paper: 1e-2)", 0.0, 1e12, label="γ init")
    gamma_factor: float = _f(1.05, "growth factor per step (paper: 1.05)", 1.0, 100.0, label="γ factor")
    gamma_step_epochs: int = _f(1, "epochs between two growth steps (paper: 1)", 1, 10**6, label="γ step")
    gamma_max: float = _f(1e6, "gamma stops growing here (paper: 1e6)", 0.0, 1e12, label="γ max")
    gamma_switch: float = _f(1e3, "dual-exponential: gamma where the late regime takes over", 0.0, 1e12)
    gamma_factor_late: float = _f(1.25, "dual-exponential: growth factor per late step", 1.0, 100.0)
    gamma_step_epochs_late: int = _f(5, "dual-exponential: epochs between late steps", 1, 10**6)
    gamma_ramp_epochs: int = _f(0, "linear/cosine: epochs to reach gamma_max; 0 = half the run", 0, 10**6)
    penalty_reduction: str = _f("mean", "sum over latent dims (paper eq. 1) or mean (authors' code)",
                                choices=REDUCTIONS)
    merge_policy: str = _f("warn", "when classes merge at the origin: warn, pause, or hold gamma",
                           choices=MERGE_POLICIES, label="on merge")
    gamma_cap: str = _f("none", "the gamma governor: none, or weight-norm (each epoch's gamma at most "
                        "gamma_cap_factor x the mean squared norm of the classifier's rows)",
                        choices=GAMMA_CAPS, label="γ cap")
    gamma_cap_factor: float = _f(0.1, "weight-norm governor: gamma <= this x mean_k ||W_k||^2 (in the "
                                 "penalty's units: x d with the mean reduction)", 1e-9, 1e9, label="γ cap c")


@dataclass(frozen=True)
class LossConfig:
    supcon_temperature: float = _f(0.05, "SupCon temperature tau (app. C)", 1e-4, 10.0)
    supcon_weight: float = _f(1.0, "weight of SupCon added to CE", 0.0, 1e3)
    arcface_margin: tuple = _f((0.1, 0.5), "ArcFace angular margin, ramped start -> end (rad)", 0.0, 1.5)
    cosface_margin: tuple = _f((0.05, 0.25), "CosFace cosine margin, ramped start -> end", 0.0, 1.0)
    margin_scale: tuple = _f((16.0, 64.0), "ArcFace/CosFace logit scale, ramped start -> end", 1.0, 1e3)
    margin_ramp_epochs: int = _f(48, "epochs of the margin/scale ramps (authors' code: scale +1 an epoch)",
                                 1, 10**6)


@dataclass(frozen=True)
class OptimConfig:
    lr: float = _f(1e-4, "AdamW learning rate (paper grid: 1e-4 x2, four values)", 1e-8, 10.0)
    lr_schedule: str = _f("halving", "constant, halving (paper) or cosine (authors' code)",
                          choices=LR_SCHEDULES, label="lr sched.")
    lr_decay_start: int = _f(250, "epoch where the LR schedule starts (paper: 250)", 1, 10**6)
    lr_halving_every: int = _f(50, "halving: epochs between halvings (paper: 50)", 1, 10**6)
    weight_decay: float = _f(5e-5, "AdamW weight decay (app. C: 0.5e-4)", 0.0, 1.0)
    classifier_lr: float = _f(0.0, "learning rate of the last classifier, outside the LR schedule; "
                              "0 = lr", 0.0, 10.0)
    classifier_weight_decay: float = _f(-1.0, "AdamW weight decay of the last classifier; negative "
                                        "(the default, -1) = weight_decay", -1.0, 1.0)


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    gamma: GammaConfig = field(default_factory=GammaConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    profile: str = _f("default", "the dataset's recipe: default, or quick (digits: the 100-epoch look, "
                      "~10 s; presets.py)", choices=PROFILES)
    epochs: int = _f(800, "training epochs (paper: 800)", 1, 10**6)
    seed: int = _f(0, "seed of weights, shuffling and augmentation", 0, 2**31 - 1)
    device: str = _f("auto", "auto (GPU when there is one), cpu, cuda, cuda:N")
    precision: str = _f("fp32", "fp32, or bf16: the forward pass under bf16 autocast (loss, "
                        "weights and optimizer stay fp32)", choices=PRECISIONS)
    data_placement: str = _f("auto", "where the training inputs live: resident on the device, or "
                             "stream (host memory, batches through a DataLoader with workers and "
                             "pinned memory); auto streams when they would take over half the "
                             "GPU's free memory. Same numbers either way", choices=PLACEMENTS,
                             label="placement")
    loader_workers: int = _f(2, "stream placement: DataLoader worker processes (0 = in this process)",
                             0, 256, label="workers")
    log_to: str = _f("", "trackers the run also writes to, comma-separated: tensorboard, wandb, mlflow "
                     "(their files inside the run's folder); '' = none", label="log to")
    compile: bool = _f(False, "torch.compile the model for training (first steps compile, "
                       "tens of seconds; checkpoints keep the plain weights)")
    metrics_every: int = _f(50, "epochs between collapse metrics; 0 = only at the end", 0, 10**6)
    eval_every: int = _f(1, "epochs between test-accuracy evaluations", 1, 10**6)
    checkpoint_every: int = _f(10, "epochs between checkpoints (and always at the end)", 1, 10**6)
    checkpoint_minutes: float = _f(0.0, "minutes of training between checkpoints, in mid-epoch too "
                                   "(at most this much is lost to a crash); 0 = off", 0.0, 1e6)
    robustness_samples: int = _f(1000, "test inputs attacked by DeepFool at the end (paper: 1000); 0 = skip",
                                 0, 10**7)
    latent_sample_size: int = _f(2000, "training latents sent with each metrics event, for histograms",
                                 0, 10**7)


# Fields a resumed run may change: more epochs, and how it runs (device,
# precision, compile, where the data lives, the trackers), which no saved
# state depends on: a checkpoint holds fp32 weights of the plain module
# whatever the precision or compilation, and the batches are the same
# whatever the placement.
RESUMABLE_CHANGES = ("epochs", "device", "precision", "compile", "data_placement", "loader_workers",
                     "log_to")


def resumable_part(cfg: RunConfig) -> dict[str, Any]:
    """{field: value} of the RESUMABLE_CHANGES fields of `cfg`."""
    return {k: getattr(cfg, k) for k in RESUMABLE_CHANGES}


def continues(saved: RunConfig, wanted: RunConfig) -> bool:
    """True if `wanted` is `saved` run on: equal but for RESUMABLE_CHANGES."""
    return dataclasses.replace(wanted, **resumable_part(saved)) == saved


SECTION_TYPES = {"model": ModelConfig, "data": DataConfig, "gamma": GammaConfig,
                 "loss": LossConfig, "optim": OptimConfig}
SECTIONS = tuple(SECTION_TYPES)


def leaf_fields() -> dict[str, tuple[str | None, dataclasses.Field]]:
    """Every leaf field by name -> (its section or None for top level, the Field)."""
    out: dict[str, tuple[str | None, dataclasses.Field]] = {}
    for f in dataclasses.fields(RunConfig):
        if f.name in SECTIONS:
            for sub in dataclasses.fields(SECTION_TYPES[f.name]):
                out[sub.name] = (f.name, sub)
        else:
            out[f.name] = (None, f)
    return out


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    """The config as nested plain data (tuples become lists), for JSON/TOML."""
    def plain(v: Any) -> Any:
        return list(v) if isinstance(v, tuple) else v
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        out[f.name] = ({k: plain(x) for k, x in dataclasses.asdict(v).items()}
                       if f.name in SECTIONS else plain(v))
    return out


def to_flat(cfg: RunConfig) -> dict[str, Any]:
    """{leaf name: value} of a config: the names flags and fields share."""
    return flatten(to_dict(cfg))


def flatten(nested: dict[str, Any], where: str = "config") -> dict[str, Any]:
    """Nested (TOML/JSON layout) -> {leaf name: value}; unknown keys are errors."""
    leaves = leaf_fields()
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: [{key}] must be a table")
            for sub, v in value.items():
                if sub not in leaves or leaves[sub][0] != key:
                    raise ConfigError(f"{where}: unknown field {short_repr(f'{key}.{sub}')}")
                flat[sub] = v
        elif key in leaves and leaves[key][0] is None:
            flat[key] = value
        elif key in leaves:
            raise ConfigError(f"{where}: field '{key}' belongs in the [{leaves[key][0]}] table")
        else:
            raise ConfigError(f"{where}: unknown field {short_repr(key)}")
    return flat


def from_flat(flat: dict[str, Any]) -> RunConfig:
    """Build a RunConfig from {leaf name: value} over the defaults, type-checked."""
    leaves = leaf_fields()
    sections: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    top: dict[str, Any] = {}
    for name, value in flat.items():
        if name not in leaves:
            raise ConfigError(f"unknown field {short_repr(name)}")
        section, f = leaves[name]
        value = _coerce(name, f, value)
        (sections[section] if section else top)[name] = value
    kwargs = {s: SECTION_TYPES[s](**v) for s, v in sections.items()}
    return RunConfig(**kwargs, **top)


def _coerce(name: str, f: dataclasses.Field, value: Any) -> Any:
    """Check the type of one value; ints are accepted where floats are."""
    kind = f.type if isinstance(f.type, str) else f.type.__name__
    ok = {
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str),
        "tuple": isinstance(value, (list, tuple)) and len(value) == 2
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value),
    }[kind]
    if not ok:
        want = "a pair [start, end] of numbers" if kind == "tuple" else kind
        raise ConfigError(f"{name}: expected {want}, got {short_repr(value)}")
    if kind == "str" and not _plain_text(value):
        raise ConfigError(f"{name}: expected text without NUL characters or lone surrogates, "
                          f"got {short_repr(value)}")
    try:
        if kind == "float":
            return float(value)
        if kind == "tuple":
            return (float(value[0]), float(value[1]))
    except OverflowError:
        raise ConfigError(f"{name}: {short_repr(value)} is too large") from None
    return value


def _plain_text(value: str) -> bool:
    """Text a path, a TOML file and a terminal can all carry."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in value


def short_repr(value: Any, limit: int = 80) -> str:
    """repr(value) cut to fit the one line of an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def validate(cfg: RunConfig) -> RunConfig:
    """Check every field's range and the cross-field rules; return cfg."""
    for name, (section, f) in leaf_fields().items():
        value = getattr(getattr(cfg, section), name) if section else getattr(cfg, name)
        check_range(name, f.metadata, value)
    g = cfg.gamma
    if g.gamma_max < g.gamma_init:
        raise ConfigError(f"gamma_max: must be >= gamma_init ({g.gamma_init:g}), got {g.gamma_max:g}")
    if g.gamma_schedule == "dual-exponential" and not g.gamma_init <= g.gamma_switch:
        raise ConfigError(f"gamma_switch: must be >= gamma_init ({g.gamma_init:g}), got {g.gamma_switch:g}")
    unknown = [t for t in tracker_names(cfg.log_to) if t not in TRACKERS]
    if unknown:
        raise ConfigError(f"log_to: unknown tracker {short_repr(unknown[0])}; choose from {', '.join(TRACKERS)}")
    if not valid_device(cfg.device):
        raise ConfigError(f"device: expected auto, cpu, cuda or cuda:N, got {short_repr(cfg.device)}")
    return cfg


def tracker_names(log_to: str) -> tuple[str, ...]:
    """The trackers of a `log_to` value, in order, without repeats: "tensorboard, wandb"."""
    names = [t.strip().lower() for t in log_to.split(",")]
    return tuple(dict.fromkeys(t for t in names if t))


def check_range(name: str, meta: Any, value: Any) -> None:
    """A ConfigError naming `name` if `value` is outside its field's choices or range."""
    choices, lo, hi = meta.get("choices"), meta.get("lo"), meta.get("hi")
    if choices and value not in choices:
        raise ConfigError(f"{name}: expected one of {', '.join(choices)}, got {short_repr(value)}")
    for v in value if isinstance(value, tuple) else (value,):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"{name}: must be a finite number, got {short_repr(v)}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            ends = (f"{int(lo)}, {int(hi)}" if isinstance(v, int) else f"{lo:g}, {hi:g}")  # 1048576, not 1.04858e+06
            raise ConfigError(f"{name}: must be in [{ends}], got {short_repr(v)}")


def valid_device(device: str) -> bool:
    if device in ("auto", "cpu", "cuda", "mps"):
        return True
    head, _, index = device.partition(":")
    return head == "cuda" and index.isascii() and index.isdigit()
