"""Errors a user can act on: each message names the file or setting at fault."""


class RiseError(Exception):
    """Base class; the CLI prints these as one line instead of a stack trace."""


class ConfigError(RiseError):
    """params.yaml is malformed or inconsistent."""


class MissingResourceError(RiseError):
    """A model, dataset, file or device named by the settings is not available."""


class DataError(RiseError):
    """An input file exists but its content is not what the loader expects."""
