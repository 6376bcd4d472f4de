"""Exceptions with messages meant for users (they name the file, flag or shape at fault).

The command-line binaries catch `CopartError` and print ``error: <message>`` on one line instead of a
stack trace; library code raises the most specific subclass.
"""


class CopartError(Exception):
  """Base class of every error a user can fix by changing their input."""


class DataError(CopartError):
  """Unreadable, missing or inconsistent data (names the file or folder)."""


class ConfigError(CopartError):
  """A bad flag or configuration value (names the flag)."""


class ModelError(CopartError):
  """A checkpoint or SavedModel that does not fit the requested model (names the path)."""
