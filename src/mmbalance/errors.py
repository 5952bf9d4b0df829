"""Errors that the command line turns into one clear line instead of a traceback."""


class MMBalanceError(Exception):
    """A problem the user can fix: bad params, a missing or corrupt file, an unknown name."""


class ConfigError(MMBalanceError):
    """``params.yaml`` (or a ``--set`` override) is invalid; the message names the key."""


class DataError(MMBalanceError):
    """An input file is missing, truncated or undecodable; the message names the file."""
