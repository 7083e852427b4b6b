"""Errors that mean "the user asked for something invalid".

The CLI turns a `UsageError` into exit code 2 with its message on one line of
stderr (DESIGN.md, contracts); anything else is a bug or a failed run.
"""


class UsageError(ValueError):
    """Bad usage or bad input: a config value, a flag, a missing data file."""


class ConfigError(UsageError):
    """A config field holds a value outside its allowed range or type."""


class DataError(UsageError):
    """A dataset cannot be found or read."""
