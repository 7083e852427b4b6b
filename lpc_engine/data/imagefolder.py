"""A folder of one's own images: torchvision's ImageFolder layout.

    DIR/train/<class>/*.png|jpg|...   the training split, one folder per class
    DIR/test/<class>/...              the test split (or DIR/val/...)

Every image is decoded once, converted to RGB and resized to image_size x
image_size (bilinear, antialiased), giving uint8 tensors that datasets.py
scales and normalises with the training split's statistics like CIFAR's.
Decoding runs in DataLoader workers when there are many images.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from lpc_engine.errors import DataError
from lpc_engine.parallel.cores import usable_cores

TEST_SPLITS = ("test", "val")
# Fewer images than this decode faster in this process than workers start.
_WORKERS_FROM = 2000


def load_imagefolder(data_dir: str | Path | None, image_size: int) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:
    """(x_train uint8 (N, 3, S, S), y_train int64, x_test, y_test, number of classes)."""
    root = _root(data_dir)
    train_dir = root / "train"
    test_dir = next((root / s for s in TEST_SPLITS if (root / s).is_dir()), None)
    if not train_dir.is_dir() or test_dir is None:
        raise DataError(f"imagefolder: {root} needs train/ and test/ (or val/) folders, one "
                        "sub-folder of images per class")
    train = _split(train_dir, image_size)
    extra = sorted({p.name for p in test_dir.iterdir() if p.is_dir()} - set(train.classes))
    if extra:
        raise DataError(f"imagefolder: {test_dir} has classes that train/ lacks: {', '.join(extra[:5])}")
    test = _split(test_dir, image_size, train.classes)  # the training split's class indices
    if len(train.classes) < 2:
        raise DataError(f"imagefolder: {train_dir} holds {len(train.classes)} class folder(s); "
                        "a classifier needs at least 2")
    x_tr, y_tr = _decode_all(train)
    x_te, y_te = _decode_all(test)
    return x_tr, y_tr, x_te, y_te, len(train.classes)


def _root(data_dir: str | Path | None) -> Path:
    if not data_dir:
        raise DataError("imagefolder needs data_dir: a folder holding train/ and test/ (or val/)")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"imagefolder: data directory {root} not found")
    return root


def _rgb(image):
    return image.convert("RGB")


def _split(path: Path, image_size: int, classes: list[str] | None = None):
    """torchvision's ImageFolder over `path`, each sample a (3, S, S) uint8
    tensor; with `classes`, indexed as those (a test split may lack some)."""
    from torchvision import datasets, transforms

    class Split(datasets.ImageFolder):
        def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
            if classes is None:
                return super().find_classes(directory)
            return classes, {c: i for i, c in enumerate(classes)}

    transform = transforms.Compose([transforms.Lambda(_rgb),
                                    transforms.Resize((image_size, image_size), antialias=True),
                                    transforms.PILToTensor()])
    try:
        return Split(str(path), transform=transform, allow_empty=classes is not None)
    except (FileNotFoundError, OSError) as exc:  # no class folders, or no images in one
        raise DataError(f"imagefolder: cannot read {path}: {exc}") from None


def _decode_all(folder) -> tuple[Tensor, Tensor]:
    """Every image of `folder` decoded: (N, 3, S, S) uint8 and (N,) int64 labels, in its order."""
    from torch.utils.data import DataLoader

    workers = 0 if len(folder) < _WORKERS_FROM else min(8, usable_cores())
    loader = DataLoader(folder, batch_size=256, shuffle=False, num_workers=workers)
    xs, ys = [], []
    try:
        for x, y in loader:
            xs.append(x)
            ys.append(y)
    except Exception as exc:  # noqa: BLE001 - PIL's errors for a corrupt or non-image file vary
        raise DataError(f"imagefolder: could not decode an image under {folder.root}: {exc}") from None
    return torch.cat(xs), torch.cat(ys).to(torch.int64)
