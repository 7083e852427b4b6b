"""Errors that mean "the user asked for something invalid", and the one that
means "the run directory stopped taking writes".

The CLI turns a `UsageError` into exit code 2 with its message on one line of
stderr (DESIGN.md, contracts), and a `StorageError` into exit code 1 (the run
failed: the disk filled up or the folder became unwritable in mid-run);
anything else is a bug or a failed run.
"""

import traceback


class UsageError(ValueError):
    """Bad usage or bad input: a config value, a flag, a missing data file."""


class ConfigError(UsageError):
    """A config field holds a value outside its allowed range or type."""


class DataError(UsageError):
    """A dataset cannot be found or read."""


class CheckpointError(UsageError):
    """A checkpoint that must not be loaded: it holds pickled Python objects
    (loading could run code) or it is not a checkpoint at all."""


class CorruptCheckpoint(CheckpointError):
    """A checkpoint whose bytes do not match its checksum or cannot be read:
    a resume falls back to the previous one."""


class StorageError(OSError):
    """The run directory cannot be written any more (disk full, permissions)
    while a run is under way; what is on disk stays consistent."""


def describe(exc: BaseException) -> str:
    """What an error that ended a run says: the engine's own errors are
    sentences for the user; anything else keeps its type ("RuntimeError: ...")."""
    if isinstance(exc, (UsageError, StorageError)) and str(exc):
        return str(exc)
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()
