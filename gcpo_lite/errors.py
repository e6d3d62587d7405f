"""The error every user-fixable problem raises: the CLI prints its message (what and how to fix) and exits 2."""


class ConfigError(ValueError):
    """A config value, input file or argument a user has to fix; the message says how."""
