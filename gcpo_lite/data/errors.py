"""The error every dataset problem raises (a ConfigError: the CLI prints its message without a traceback)."""

from __future__ import annotations

from gcpo_lite.config import ConfigError


class DataError(ConfigError):
    """A dataset problem a user has to fix; the message says how (the CLI prints it without a traceback)."""
