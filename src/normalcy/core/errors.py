"""Errors that normalcy raises on purpose.

Every error names the file, field or value at fault and what was expected, so the CLI can
print one line instead of a traceback.
"""


class NormalcyError(Exception):
    """Base class: an error the user can act on."""


class DataError(NormalcyError, ValueError):
    """Input data is missing, malformed or outside an explicit limit."""


class ModelFileError(NormalcyError):
    """A model folder is missing, incomplete, tampered with or from a newer format."""


class NotFittedError(NormalcyError, RuntimeError):
    """A detector was used before `fit`."""
