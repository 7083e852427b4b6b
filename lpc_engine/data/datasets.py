"""Datasets as normalised tensors, loaded once and normalised once.

Resident (the default wherever it fits): the inputs are kept on the device;
batches are index slices and augmentation is a batched gather
(`data/augment.py`), as in airbench. Streamed (data/stream.py): the inputs
stay in host memory and batches reach the device through a DataLoader with
workers and pinned memory, then the same augmentation on the device; the
labels stay on the device either way. The same elementwise float32 scaling
and normalisation run in both cases, so the inputs are the same bit for bit.
torchvision and scikit-learn are imported inside the loaders so that
`import lpc_engine.data` stays cheap.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from lpc_engine.data.imagefolder import load_imagefolder
from lpc_engine.data.stream import choose_placement, pinned
from lpc_engine.errors import DataError

DATASETS = ("digits", "synthetic", "cifar10", "cifar100", "mnist", "fashion-mnist", "npz", "imagefolder")
EMBEDDED = ("digits", "synthetic")  # the others are read from data_dir

# Constant pixels (digits has an all-zero border) must not divide by zero.
_STD_FLOOR = 1e-8
_SYNTHETIC_SEED = 20240521  # private seed: the synthetic set never touches the global RNG


@dataclasses.dataclass(frozen=True)
class TensorData:
    """A dataset's two splits, normalised, on one device.

    `x_*` are float32 (N, *input_shape); `y_*` are int64 (N,) in
    [0, num_classes). Un-normalise with `x * std + mean` per channel (per
    feature for flat inputs) to get the raw inputs back, pixels in [0, 1].
    """

    x_train: Tensor  # (N_train, *input_shape) float32, normalised
    y_train: Tensor  # (N_train,) int64 class labels
    x_test: Tensor  # (N_test, *input_shape) float32, normalised with the training stats
    y_test: Tensor  # (N_test,) int64 class labels
    num_classes: int  # K; labels are 0..K-1
    input_shape: tuple[int, ...]  # per-sample shape: (C, H, W) or (F,)
    mean: tuple[float, ...]  # per-channel (per-feature) mean subtracted, training split
    std: tuple[float, ...]  # per-channel (per-feature) std divided by, floored at 1e-8
    crop_padding: int  # random-crop padding that suits this dataset (0: no crop)
    flip: bool  # whether random horizontal flips suit this dataset
    name: str  # one of DATASETS
    streamed: bool = False  # the inputs stay in host memory and stream to the device (data/stream.py)

    @property
    def device(self) -> torch.device:
        """Where the model trains: the labels' device (the inputs' too, unless streamed)."""
        return self.y_train.device

    def to(self, device: str | torch.device) -> TensorData:
        """A copy with all four tensors on `device`, resident."""
        return dataclasses.replace(
            self, streamed=False,
            x_train=self.x_train.to(device),
            y_train=self.y_train.to(device),
            x_test=self.x_test.to(device),
            y_test=self.y_test.to(device),
        )


class _Raw(NamedTuple):
    """What a loader returns: CPU tensors before scaling and normalisation."""

    x_train: Tensor  # (N, C, H, W) or (N, F), uint8 or float
    y_train: Tensor  # (N,) integer labels
    x_test: Tensor
    y_test: Tensor
    scale: float  # raw / scale gives the inputs in [0, 1] for images
    num_classes: int
    crop_padding: int
    flip: bool


def load_data(
    name: str,
    data_dir: str | Path | None = None,
    download: bool = False,
    device: str | torch.device = "cpu",
    *,
    image_size: int = 32,
    placement: str = "resident",
) -> TensorData:
    """Load dataset `name` normalised, for training on `device`.

    `data_dir` is the torchvision root for cifar10/cifar100/mnist/fashion-mnist,
    the `.npz` file (or a directory holding `data.npz`) for npz, the folder
    holding train/ and test/ (or val/) for imagefolder (resized to
    `image_size`), and unused for digits and synthetic. `placement` is
    "resident", "stream" or "auto" (data/stream.py). Raises `DataError` with a
    one-line message when the data cannot be found or read.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    if name == "digits":
        raw = _load_digits()
    elif name == "synthetic":
        raw = _load_synthetic()
    elif name == "npz":
        raw = _load_npz(_npz_path(data_dir))
    elif name == "imagefolder":
        raw = _load_imagefolder(data_dir, image_size)
    else:
        raw = _load_torchvision(name, data_dir, download)
    device = torch.device(device)
    inputs = raw.x_train.numel() + raw.x_test.numel()
    return _finish(name, raw, device, choose_placement(placement, 4 * inputs, device) == "stream")


def _finish(name: str, raw: _Raw, device: torch.device, streamed: bool = False) -> TensorData:
    """Scale to [0, 1], normalise with training-split statistics; the inputs
    on `device`, or in (pinned) host memory if `streamed`.

    The raw (often uint8, 4x smaller) tensors are moved first so the float
    conversion and the statistics run where the inputs will live.
    """
    where = torch.device("cpu") if streamed else device
    x_train = raw.x_train.to(where).float().div_(raw.scale)
    x_test = raw.x_test.to(where).float().div_(raw.scale)
    mean, std = _channel_stats(x_train)
    shape = (1, -1) + (1,) * (x_train.dim() - 2)  # broadcast over channels
    mean_t = torch.tensor(mean, dtype=torch.float32, device=where).view(shape)
    std_t = torch.tensor(std, dtype=torch.float32, device=where).view(shape)
    x_train, x_test = (x.sub_(mean_t).div_(std_t) for x in (x_train, x_test))
    if streamed:
        x_train, x_test = pinned(x_train, device), pinned(x_test, device)
    return TensorData(
        x_train=x_train,
        y_train=raw.y_train.to(device=device, dtype=torch.int64),
        x_test=x_test,
        y_test=raw.y_test.to(device=device, dtype=torch.int64),
        num_classes=raw.num_classes,
        input_shape=tuple(x_train.shape[1:]),
        mean=mean,
        std=std,
        crop_padding=raw.crop_padding,
        flip=raw.flip,
        name=name,
        streamed=streamed,
    )


def _channel_stats(x: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Population mean and std per channel of (N, C, ...) (per feature of (N, F)).

    Computed in float64 one channel at a time: accurate on CIFAR's 50000 x 1024
    values a channel without a float64 copy of the whole split.
    """
    x3 = x.reshape(x.shape[0], x.shape[1], -1)
    stats = [torch.var_mean(x3[:, c].double(), correction=0) for c in range(x3.shape[1])]
    var = torch.stack([v for v, _ in stats])
    mean = torch.stack([m for _, m in stats])
    std = var.sqrt().clamp_min(_STD_FLOOR)
    return tuple(mean.tolist()), tuple(std.tolist())


def _load_digits() -> _Raw:
    """scikit-learn's 8x8 digits (no network): 1437 train / 360 test, stratified."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.images.reshape(-1, 1, 8, 8).astype(np.float32)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, digits.target, test_size=0.2, random_state=0, stratify=digits.target
    )
    # Pixel values are 0..16. A 1-pixel crop suits 8x8 images; digits are not
    # mirror-symmetric, so no flips.
    return _Raw(*map(torch.from_numpy, (x_tr, y_tr, x_te, y_te)), 16.0, 10, 1, False)


def _load_synthetic() -> _Raw:
    """4 classes of 3x8x8 images: class prototypes plus Gaussian noise.

    256 train / 128 test, the same every call, made with a private generator
    so the caller's global RNG is neither used nor changed. Noise of std 1.5
    around unit-variance prototypes keeps the task easy but not instant.
    """
    g = torch.Generator().manual_seed(_SYNTHETIC_SEED)
    prototypes = torch.randn(4, 3, 8, 8, generator=g)

    def split(n: int) -> tuple[Tensor, Tensor]:
        y = torch.arange(n) % 4  # balanced classes
        y = y[torch.randperm(n, generator=g)]
        return prototypes[y] + 1.5 * torch.randn(n, 3, 8, 8, generator=g), y

    x_tr, y_tr = split(256)
    x_te, y_te = split(128)
    return _Raw(x_tr, y_tr, x_te, y_te, 1.0, 4, 0, False)


# name -> (torchvision class, its folder under root, classes, crop padding, flip).
# CIFAR: padding 4 and flips (paper, appendix C); MNIST-like: padding 2 (the
# same 1/8 of a side as CIFAR's 4/32), no flips (digits and garments have a side).
_TORCHVISION = {
    "cifar10": ("CIFAR10", "cifar-10-batches-py", 10, 4, True),
    "cifar100": ("CIFAR100", "cifar-100-python", 100, 4, True),
    "mnist": ("MNIST", "MNIST", 10, 2, False),
    "fashion-mnist": ("FashionMNIST", "FashionMNIST", 10, 2, False),
}


def _load_torchvision(name: str, data_dir: str | Path | None, download: bool) -> _Raw:
    """Read a torchvision dataset's arrays directly, skipping its PIL pipeline."""
    cls_name, folder, classes, padding, flip = _TORCHVISION[name]
    if data_dir is None:
        raise DataError(f"{name} needs data_dir: the directory that holds (or will hold) its files")
    root = Path(data_dir).expanduser()
    if not download:
        if not root.is_dir():
            raise DataError(f"{name}: data directory {root} not found")
        if not (root / folder).is_dir():
            raise DataError(
                f"{name}: dataset files not found in {root} (expected {folder}/); "
                f"pass --download or put the files in {root}"
            )
    try:
        import torchvision.datasets as tvd
    except ImportError as exc:
        raise DataError(f"{name} needs torchvision, which is not installed") from exc
    cls = getattr(tvd, cls_name)
    train, test = (_open(cls, name, root, download, split) for split in (True, False))
    if cls_name.startswith("CIFAR"):
        # .data is uint8 (N, H, W, C) numpy; .targets a list of ints.
        x_tr, x_te = (torch.from_numpy(d.data).permute(0, 3, 1, 2) for d in (train, test))
        y_tr, y_te = (torch.tensor(d.targets) for d in (train, test))
    else:
        # .data is uint8 (N, 28, 28) torch; .targets int64 (N,).
        x_tr, x_te = (d.data.unsqueeze(1) for d in (train, test))
        y_tr, y_te = train.targets, test.targets
    return _Raw(x_tr, y_tr, x_te, y_te, 255.0, classes, padding, flip)


def _open(cls: type, name: str, root: Path, download: bool, train: bool) -> object:
    """Instantiate a torchvision dataset, turning any failure into a DataError.

    torchvision reports missing or corrupt files as RuntimeError, truncated
    idx files as AssertionError and failed downloads as URLError, so every
    exception while reading is a data problem, reported on one line.
    """
    try:
        return cls(root=str(root), train=train, download=download)
    except Exception as exc:  # noqa: BLE001 - see docstring
        # One line, without torchvision's advice to set download=True (the
        # hint below says how to do that here).
        reason = re.sub(r"\s*You can use download=True to download it\.?", "", str(exc))
        reason = re.sub(r"\s+", " ", reason).strip(" .") or type(exc).__name__
        hint = "" if download else f"; pass --download or put the files in {root}"
        raise DataError(f"{name}: could not read the dataset in {root}: {reason}{hint}") from exc


def _npz_path(data_dir: str | Path | None) -> Path:
    """The .npz file named by `data_dir`, or `data_dir/data.npz`."""
    if data_dir is None:
        raise DataError("npz needs data_dir: a .npz file or a directory holding data.npz")
    path = Path(data_dir).expanduser()
    if path.is_dir():
        path = path / "data.npz"
    if not path.is_file():
        raise DataError(f"npz: file {path} not found")
    return path


_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _load_npz(path: Path) -> _Raw:
    """Arrays x_train (N, F) or (N, C, H, W), y_train (N,) in 0..K-1, and the same for test."""
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in _NPZ_KEYS if k not in f.files]
            if missing:
                raise DataError(f"npz: {path} lacks key(s) {', '.join(missing)}")
            arrays = {k: f[k] for k in _NPZ_KEYS}
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - a corrupt or non-npz file, or object arrays
        raise DataError(f"npz: could not read {path}: {exc}") from exc
    x_tr, x_te = (_npz_inputs(arrays, k) for k in ("x_train", "x_test"))
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise DataError(
            f"npz: x_train samples have shape {x_tr.shape[1:]} but x_test samples {x_te.shape[1:]}"
        )
    y_tr, y_te = (_npz_labels(arrays, k, len(x)) for k, x in (("y_train", x_tr), ("y_test", x_te)))
    num_classes = int(y_tr.max()) + 1
    if num_classes < 2:
        raise DataError("npz: y_train holds a single class; a classifier needs at least 2")
    if y_te.max() >= num_classes:
        raise DataError(
            f"npz: y_test has label {int(y_te.max())} but y_train's labels are 0..{num_classes - 1}"
        )
    padding, flip = _image_augmentation(x_tr)
    return _Raw(x_tr, torch.from_numpy(y_tr), x_te, torch.from_numpy(y_te), 1.0, num_classes, padding, flip)


def _image_augmentation(x: Tensor) -> tuple[int, bool]:
    """(crop padding, flip) for a user's own images, as for CIFAR: padding
    1/8 of the side (CIFAR's 4 of 32) and horizontal flips; none for flat inputs."""
    if x.dim() != 4:
        return 0, False
    return max(1, min(x.shape[2], x.shape[3]) // 8), True


def _load_imagefolder(data_dir: str | Path | None, image_size: int) -> _Raw:
    """A folder of one's own images (data/imagefolder.py), uint8 pixels 0..255."""
    x_tr, y_tr, x_te, y_te, classes = load_imagefolder(data_dir, image_size)
    padding, flip = _image_augmentation(x_tr)
    return _Raw(x_tr, y_tr, x_te, y_te, 255.0, classes, padding, flip)


def _npz_inputs(arrays: dict[str, np.ndarray], key: str) -> Tensor:
    """Check one input array: numeric, (N, F) or (N, C, H, W), N > 0, all finite."""
    x = arrays[key]
    if x.ndim not in (2, 4) or x.shape[0] == 0:
        raise DataError(f"npz: {key} must be a non-empty (N, F) or (N, C, H, W) array, got shape {x.shape}")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise DataError(f"npz: {key} must be numeric, got dtype {x.dtype}")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise DataError(f"npz: {key} holds NaN or infinite values")
    return torch.from_numpy(x)


def _npz_labels(arrays: dict[str, np.ndarray], key: str, n: int) -> np.ndarray:
    """Check one label array: integer, shape (n,), no negative labels."""
    y = arrays[key]
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"npz: {key} must hold integer labels, got dtype {y.dtype}")
    if y.shape != (n,):
        raise DataError(f"npz: {key} must have shape ({n},) to match its inputs, got {y.shape}")
    if y.min() < 0:
        raise DataError(f"npz: {key} has negative label {int(y.min())}; labels must be 0..K-1")
    return y.astype(np.int64)
