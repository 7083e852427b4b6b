"""`dataset = "imagefolder"`: a tree of PNGs the test writes trains,
resumes exactly and reports the paper's metrics; bad trees are one-line DataErrors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lpc_engine import build_config, train
from lpc_engine.data.datasets import load_data
from lpc_engine.errors import DataError
from lpc_engine.metrics import METRIC_NAMES
from lpc_engine.runs.store import read_events

CLASSES = ("cat", "dog", "fox")


def write_tree(root: Path, per_class=(12, 4), size=20, test_name="test") -> Path:
    """RGB PNGs of 20 x 20: a class colour plus noise; one grey-scale image,
    which is read as RGB."""
    rng = np.random.default_rng(0)
    colours = rng.integers(40, 215, size=(len(CLASSES), 3))
    for split, n in zip(("train", test_name), per_class):
        for c, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(colours[c] + rng.normal(0, 30, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    Image.fromarray(np.full((size, size), 128, np.uint8), mode="L").save(root / "train" / "cat" / "grey.png")
    return root


def test_images_are_resized_scaled_and_normalised_with_the_training_statistics(tmp_path: Path) -> None:
    data = load_data("imagefolder", write_tree(tmp_path / "pets"), image_size=16)
    assert data.x_train.shape == (3 * 12 + 1, 3, 16, 16) and data.x_test.shape == (12, 3, 16, 16)
    assert data.num_classes == 3 and sorted(set(data.y_test.tolist())) == [0, 1, 2]
    per_channel = data.x_train.transpose(0, 1).reshape(3, -1).double()
    assert per_channel.mean(1).abs().max() < 1e-5 and (per_channel.std(1, correction=0) - 1).abs().max() < 1e-5
    assert (data.crop_padding, data.flip) == (2, True)


def test_val_is_the_test_split_when_there_is_no_test_folder(tmp_path: Path) -> None:
    data = load_data("imagefolder", write_tree(tmp_path / "pets", test_name="val"), image_size=8)
    assert data.x_test.shape[0] == 12


@pytest.mark.parametrize("breakage, message", [
    (lambda root: None, "not found"),
    (lambda root: (root / "train").mkdir(parents=True), "needs train/ and test/"),
    (lambda root: write_tree(root) and (root / "test" / "wolf").mkdir(), "classes that train/ lacks: wolf"),
    (lambda root: write_tree(root) and (root / "train" / "cat" / "0.png").write_bytes(b"not a png"),
     "could not decode"),
])
def test_a_bad_tree_is_one_data_error(breakage, message, tmp_path: Path) -> None:
    root = tmp_path / "pets"
    breakage(root)
    with pytest.raises(DataError) as info:
        load_data("imagefolder", root, image_size=8)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_an_imagefolder_run_trains_resumes_exactly_and_reports_the_papers_metrics(tmp_path: Path,
                                                                                  helpers) -> None:
    root = write_tree(tmp_path / "pets")
    flags = {"dataset": "imagefolder", "data_dir": str(root), "image_size": 16, "backbone": "cnn",
             "latent_dim": 8, "device": "cpu", "batch_size": 16, "metrics_every": 2,
             "robustness_samples": 12, "latent_sample_size": 0}
    straight = list(train(build_config(None, {**flags, "epochs": 4}), run_dir=tmp_path / "straight"))
    list(train(build_config(None, {**flags, "epochs": 2}), run_dir=tmp_path / "r"))
    resumed = list(train(build_config(None, {**flags, "epochs": 4}), run_dir=tmp_path / "r", resume=True))
    rows = [[helpers.without_timing(r) for r in helpers.epoch_rows(read_events(d / "events.jsonl"))]
            for d in (tmp_path / "r", tmp_path / "straight")]
    for row, ref in zip(*rows, strict=True):
        assert row.pop("latent_norm_cov") == pytest.approx(ref.pop("latent_norm_cov"), rel=1e-12)
        assert row == ref
    summary = resumed[-1].summary
    assert summary["status"] == "finished" and summary == {**straight[-1].summary, **{
        k: summary[k] for k in ("seconds", "session_seconds")}}
    assert set(METRIC_NAMES) <= set(summary["metrics"]) and summary["robustness"]["samples"] == 12
