"""The one base class of errors caused by the user's input (a bad file, model id, config value...).

The command line prints these as one clear line (exit code 2); every other exception is a bug and keeps
its traceback. Library callers can catch ``UserError`` to tell the two apart.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input from the user: the message says what is wrong, names the file or field, and what to do."""


class ConfigError(UserError):
    """A config field of the wrong type or out of range, an unknown field, or a config file that is not a mapping."""
