"""load_data: every dataset as normalised tensors, and readable errors.

CIFAR and MNIST are tested on tiny files written here in their real on-disk
formats, so torchvision's own readers run without any network.
"""

import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lpc_engine.data.datasets import DATASETS, TensorData, load_data
from lpc_engine.errors import DataError


def _unnormalise(x: torch.Tensor, data: TensorData) -> torch.Tensor:
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return x * torch.tensor(data.std).view(shape).float() + torch.tensor(data.mean).view(shape).float()


# ---------------------------------------------------------------- digits, synthetic


def test_digits_shapes_split_and_normalisation():
    d = load_data("digits")
    assert d.name == "digits" and d.num_classes == 10
    assert d.x_train.shape == (1437, 1, 8, 8) and d.x_test.shape == (360, 1, 8, 8)
    assert d.input_shape == (1, 8, 8)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert d.y_train.unique().tolist() == list(range(10))
    assert abs(d.x_train.mean().item()) < 1e-5
    assert d.x_train.std(correction=0).item() == pytest.approx(1.0, abs=1e-4)
    assert (d.crop_padding, d.flip) == (1, False)
    # Raw pixels are k/16 for integers k in 0..16.
    raw = _unnormalise(d.x_train, d) * 16
    assert torch.allclose(raw, raw.round(), atol=1e-4) and raw.min() > -1e-4 and raw.max() < 16 + 1e-4


def test_digits_is_deterministic():
    a, b = load_data("digits"), load_data("digits")
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert a.mean == b.mean and a.std == b.std


def test_synthetic_shapes_determinism_and_global_rng_untouched():
    state = torch.get_rng_state()
    a = load_data("synthetic")
    assert torch.equal(torch.get_rng_state(), state)
    b = load_data("synthetic")
    assert a.x_train.shape == (256, 3, 8, 8) and a.x_test.shape == (128, 3, 8, 8)
    assert a.num_classes == 4 and a.y_train.bincount().tolist() == [64] * 4
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    assert len(a.mean) == 3 and (a.crop_padding, a.flip) == (0, False)
    assert a.x_train.mean(dim=(0, 2, 3)).abs().max() < 1e-5


def test_synthetic_is_learnable_by_nearest_class_mean():
    d = load_data("synthetic")
    centres = torch.stack([d.x_train[d.y_train == k].mean(0) for k in range(4)]).flatten(1)
    pred = torch.cdist(d.x_test.flatten(1), centres).argmin(1)
    assert (pred == d.y_test).float().mean() > 0.9


def test_to_device_copies_tensors_and_keeps_metadata():
    d = load_data("synthetic")
    e = d.to("cpu")
    assert torch.equal(e.x_test, d.x_test) and (e.mean, e.name) == (d.mean, d.name)
    if torch.cuda.is_available():
        assert d.to("cuda").x_train.is_cuda


def test_importing_data_does_not_import_torchvision_or_sklearn():
    code = "import sys, lpc_engine.data.datasets; print('torchvision' in sys.modules, 'sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# ---------------------------------------------------------------- torchvision formats


@pytest.fixture
def no_md5(monkeypatch):
    """torchvision checks each CIFAR file against the md5 of the real release;
    files written by a test can never match, so the integrity check (used for
    the batches and for batches.meta) is patched to accept them."""
    import torchvision.datasets.cifar as cifar

    monkeypatch.setattr(cifar, "check_integrity", lambda *args, **kwargs: True)


def test_cifar10_round_trips_pixels_and_labels(tmp_path, no_md5, helpers):
    x_tr, y_tr, x_te, y_te = helpers.write_cifar10(tmp_path, np.random.default_rng(0))
    d = load_data("cifar10", data_dir=tmp_path)
    assert d.x_train.shape == (15, 3, 32, 32) and d.x_test.shape == (4, 3, 32, 32)
    assert (d.num_classes, d.crop_padding, d.flip, len(d.mean)) == (10, 4, True, 3)
    for x, raw in ((d.x_train, x_tr), (d.x_test, x_te)):
        expected = torch.from_numpy(raw).float() / 255
        assert torch.allclose(_unnormalise(x, d), expected, atol=1e-5)
    assert d.y_train.tolist() == y_tr.tolist() and d.y_test.tolist() == y_te.tolist()


def _write_cifar100(root: Path, rng: np.random.Generator) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n in (("train", 5), ("test", 2)):
        x = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 100, size=n).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({"data": x, "fine_labels": labels, "coarse_labels": [0] * n}, f, protocol=2)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"c{k}" for k in range(100)]}, f, protocol=2)


def test_cifar100_loads_fine_labels(tmp_path, no_md5):
    _write_cifar100(tmp_path, np.random.default_rng(1))
    d = load_data("cifar100", data_dir=tmp_path)
    assert d.x_train.shape == (5, 3, 32, 32) and d.num_classes == 100


def _write_idx(path: Path, array: np.ndarray) -> None:
    """An idx file: magic 0x0000 08 ndim (uint8), big-endian dims, then the bytes."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _write_mnist(root: Path, folder: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    arrays = {}
    for split, n in (("train", 6), ("t10k", 3)):
        arrays[f"{split}-images"] = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        arrays[f"{split}-labels"] = rng.integers(0, 10, size=n, dtype=np.uint8)
        _write_idx(raw / f"{split}-images-idx3-ubyte", arrays[f"{split}-images"])
        _write_idx(raw / f"{split}-labels-idx1-ubyte", arrays[f"{split}-labels"])
    return arrays


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_mnist_formats_round_trip_pixels_and_labels(tmp_path, name, folder):
    arrays = _write_mnist(tmp_path, folder, np.random.default_rng(2))
    d = load_data(name, data_dir=str(tmp_path))
    assert d.x_train.shape == (6, 1, 28, 28) and d.x_test.shape == (3, 1, 28, 28)
    assert (d.num_classes, d.crop_padding, d.flip, d.input_shape) == (10, 2, False, (1, 28, 28))
    for x, split in ((d.x_train, "train"), (d.x_test, "t10k")):
        expected = torch.from_numpy(arrays[f"{split}-images"]).float().unsqueeze(1) / 255
        assert torch.allclose(_unnormalise(x, d), expected, atol=1e-5)
    assert d.y_train.tolist() == arrays["train-labels"].tolist()
    assert d.y_test.dtype == torch.int64


# ---------------------------------------------------------------- errors


def test_unknown_dataset_lists_the_choices():
    with pytest.raises(DataError, match="unknown dataset 'imagenet'.*cifar10"):
        load_data("imagenet")
    assert "fashion-mnist" in DATASETS


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "mnist", "fashion-mnist", "npz"])
def test_missing_data_dir_is_a_data_error(name):
    with pytest.raises(DataError, match="data_dir"):
        load_data(name)


def test_data_dir_not_found(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_data("cifar10", data_dir=tmp_path / "nowhere")


def test_missing_files_suggest_download(tmp_path):
    with pytest.raises(DataError) as err:
        load_data("mnist", data_dir=tmp_path)
    message = str(err.value)
    assert "pass --download or put the files in" in message and str(tmp_path) in message
    assert "\n" not in message


def test_incomplete_files_are_wrapped_not_a_runtime_error(tmp_path):
    # The MNIST folder exists but one file is missing: torchvision raises
    # RuntimeError, which must arrive as a one-line DataError.
    arrays_dir = tmp_path / "MNIST" / "raw"
    _write_mnist(tmp_path, "MNIST", np.random.default_rng(0))
    (arrays_dir / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="could not read.*pass --download"):
        load_data("mnist", data_dir=tmp_path)


# ---------------------------------------------------------------- npz


def _npz(tmp_path: Path, **overrides) -> Path:
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.normal(size=(20, 5)),
        "y_train": np.arange(20) % 3,
        "x_test": rng.normal(size=(6, 5)),
        "y_test": np.arange(6) % 3,
    }
    arrays.update(overrides)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return path


def test_npz_flat_features_are_normalised_per_feature(tmp_path):
    path = _npz(tmp_path)
    d = load_data("npz", data_dir=path)
    assert d.input_shape == (5,) and d.num_classes == 3 and len(d.mean) == 5
    assert d.x_train.mean(0).abs().max() < 1e-5
    raw = np.load(path)["x_test"]
    assert torch.allclose(_unnormalise(d.x_test, d), torch.from_numpy(raw).float(), atol=1e-5)
    assert (d.crop_padding, d.flip) == (0, False)


def test_npz_images_load_from_a_directory(tmp_path):
    rng = np.random.default_rng(1)
    _npz(tmp_path, x_train=rng.random((20, 2, 4, 4)), x_test=rng.random((6, 2, 4, 4)))
    d = load_data("npz", data_dir=tmp_path)
    assert d.x_train.shape == (20, 2, 4, 4) and d.mean.__len__() == 2


@pytest.mark.parametrize(
    "override, pattern",
    [
        ({"y_test": None}, "lacks key.*y_test"),
        ({"x_train": np.full((20, 5), np.nan)}, "x_train holds NaN"),
        ({"y_test": np.array([0, 1, 2, 3, 0, 1])}, "y_test has label 3"),
        ({"y_train": -(np.arange(20) % 3)}, "y_train has negative label"),
        ({"y_train": np.arange(20) % 3 + 0.5}, "y_train must hold integer labels"),
        ({"y_test": np.zeros(5, dtype=int)}, r"y_test must have shape \(6,\)"),
        ({"x_test": np.zeros((6, 4))}, "x_train samples have shape"),
        ({"x_train": np.zeros((20, 5, 2))}, "x_train must be"),
    ],
)
def test_npz_problems_name_the_key(tmp_path, override, pattern):
    path = _npz(tmp_path, **override)
    with pytest.raises(DataError, match=pattern):
        load_data("npz", data_dir=path)


def test_npz_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_data("npz", data_dir=tmp_path / "absent.npz")
