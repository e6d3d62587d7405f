"""Config names that changed. A config written before a rename still loads: the old name is read as the new
one, with a one-line notice saying what to rename."""

from __future__ import annotations

import logging

from gcpo_lite.errors import ConfigError

log = logging.getLogger("gcpo_lite.config.loading")

RENAMED = {
    "scheduler": "memory",  # a section: the memory planner (train.lr_scheduler is the LR schedule)
    "rollout.share_prefill": "rollout.share_prompts",  # prompt sharing: one name in both phases
}


def current_name(dotted: str) -> str:
    """`section` or `section.key` under its current name (a notice when it was an old one)."""
    section, _, key = dotted.partition(".")
    new = RENAMED.get(dotted) or (RENAMED.get(section, section) + (f".{key}" if key else ""))
    if new != dotted:
        log.warning("config key %r is now %r (the old name still loads; rename it)", dotted, new)
    return new


def with_current_names(data: dict) -> dict:
    """A config dict (sections of keys) with old names replaced; both an old and a new name for one setting
    are refused, since they could disagree without a word."""
    out: dict = {}
    for section, body in data.items():
        name = current_name(section) if section in RENAMED else section
        if isinstance(body, dict):
            body = _keys_renamed(name, body)
        if name in out:
            raise ConfigError(
                f"the config has both {section!r} and {name!r} (the old and new name): keep one"
            )
        out[name] = body
    return out


def _keys_renamed(section: str, body: dict) -> dict:
    out = {}
    for key, value in body.items():
        new = current_name(f"{section}.{key}").split(".", 1)[1] if f"{section}.{key}" in RENAMED else key
        if new in out:
            raise ConfigError(
                f"the config has both {section}.{key} and {section}.{new} (old and new name): keep one"
            )
        out[new] = value
    return out
