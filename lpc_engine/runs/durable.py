"""Writing files so that a crash leaves the old file or the new one, never
a part: a temporary file, fsync, rename over the old, fsync of the folder.
A write that fails in mid-run raises StorageError (`writing`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lpc_engine.errors import StorageError


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash never leaves a partial file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk must not leave debris behind
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in `folder` survive a power loss."""
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """An OSError while writing `path` in mid-run becomes a StorageError."""
    try:
        yield
    except StorageError:
        raise
    except OSError as exc:
        raise StorageError(f"runs dir: cannot write {path}: {exc.strerror or exc}") from None
