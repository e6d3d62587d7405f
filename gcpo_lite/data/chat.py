"""Chat-form prompts (TRL's conversational format): a list of {"role", "content"} messages instead of text.

`chat_messages` checks one row's prompt value and returns its messages (a DataError naming the row, what is
wrong and how to fix it, otherwise); `template_messages(example)` is what the chat template renders for any
Example: its own messages, or [system?, user] for a plain-text prompt. data.system_prompt (Example.system) is
put first as a system message when the messages have none; messages with their own system message keep it.
"""

from __future__ import annotations

import json
from typing import Optional

from gcpo_lite.config.validation import shown
from gcpo_lite.data.errors import DataError
from gcpo_lite.data.tasks import Example

ROLES = ("system", "user", "assistant")

_SHAPE = (
    'give each row\'s prompt as text, or as a list of {"role": "system" | "user" | "assistant", '
    '"content": text} messages (TRL\'s conversational format)'
)


def _bad_message(where: str, column: str, i: int, what: str) -> DataError:
    return DataError(
        f"{where}: the prompt column {column!r} is a list of chat messages, but message {i} {what}; {_SHAPE}"
    )


def _check_message(message, where: str, column: str, i: int) -> None:
    if not isinstance(message, dict):
        what = f"is a {type(message).__name__} ({shown(message, 40)}), not a {{'role', 'content'}} dict"
        raise _bad_message(where, column, i, what)
    for key in ("role", "content"):
        if key not in message:
            raise _bad_message(
                where, column, i, f"has no {key!r} key (its keys: {', '.join(map(str, message))})"
            )
    if message["role"] not in ROLES:
        what = f"has the role {shown(message['role'], 40)}, not one of {', '.join(ROLES)}"
        raise _bad_message(where, column, i, what)
    if not isinstance(message["content"], str):
        content = message["content"]
        what = f"has a {type(content).__name__} content ({shown(content, 40)}), not a string"
        raise _bad_message(where, column, i, what)


def chat_messages(value, where: str, column: str) -> list[dict]:
    """The messages of a prompt value that is a list (a DataError unless each is a {role, content} dict with a
    known role and string content, and one is from the user); `where` names the row, `column` the prompt
    column. Each message is kept as the dataset holds it (extra keys included), copied."""
    if len(value) == 0:
        raise DataError(
            f"{where}: the prompt column {column!r} holds an empty list of chat messages; {_SHAPE}"
        )
    for i, message in enumerate(value, 1):
        _check_message(message, where, column, i)
    if last_user_content(value) is None:
        raise DataError(
            f"{where}: the prompt column {column!r} is a list of chat messages with no user message; add the "
            f"question as a {{'role': 'user', 'content': ...}} message"
        )
    return [dict(m) for m in value]


def last_user_content(messages: list[dict]) -> Optional[str]:
    """The content of the last user message (None when there is none)."""
    return next((m["content"] for m in reversed(messages) if m.get("role") == "user"), None)


def has_system(messages: list[dict]) -> bool:
    return any(m.get("role") == "system" for m in messages)


def template_messages(example: Example) -> list[dict]:
    """The messages the chat template renders for `example`: its own (with Example.system first when they
    have no system message), or [system?, user] for a plain-text prompt."""
    system = [{"role": "system", "content": example.system}] if example.system else []
    if example.messages is not None:
        return list(example.messages) if has_system(example.messages) else system + list(example.messages)
    return system + [{"role": "user", "content": example.prompt}]


def messages_key(messages: list[dict]) -> str:
    """A stable text of the messages (keys sorted), for fingerprints."""
    return json.dumps(messages, sort_keys=True, default=str)
