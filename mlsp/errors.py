"""Library errors: one-line messages naming the file or option and the cause.

Both are ``ValueError``\\ s, so callers that caught ValueError keep working; the command
line turns every one into a one-line error.
"""
__all__ = ["MLSPError", "OptionError", "ModelFileError"]


class MLSPError(Exception):
    """Base of mlsp's own errors."""


class OptionError(MLSPError, ValueError):
    """An option value (or a combination of them) that cannot work."""


class ModelFileError(MLSPError, ValueError):
    """A trained-head folder whose files are not a readable mlsp model."""
