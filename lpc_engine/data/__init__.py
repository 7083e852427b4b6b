"""Datasets as tensors on the device (datasets.py) and their augmentation on
the device (augment.py)."""
