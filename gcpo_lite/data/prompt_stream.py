"""The training order: the prompts served in a seeded order that reshuffles each epoch, and resumes exactly.

The fingerprint a checkpoint keeps is of each prompt and answer (a chat-form prompt's messages too, as sorted
JSON); a plain-text prompt's part is what it always was, so older checkpoints still resume."""

from __future__ import annotations

import functools
import hashlib
import random

from gcpo_lite.data.chat import messages_key
from gcpo_lite.data.errors import DataError
from gcpo_lite.data.tasks import Example


def _fingerprint_text(ex: Example) -> str:
    """An example's part of the fingerprint: the original formula for a plain-text prompt (old checkpoints
    resume), the messages added for a chat-form one (two chats that share the last user message differ)."""
    if ex.messages is None:
        return f"{ex.prompt}\x00{ex.answer}\x01"
    return f"{ex.prompt}\x00{ex.answer}\x02{messages_key(ex.messages)}\x01"


class PromptStream:
    """The training prompts, served in order and reshuffled (seeded) at the start of each new epoch.

    Its position is (epoch, cursor, the current order); state_dict() holds it as plain ints (safe for
    torch.load(weights_only=True)) plus a fingerprint of the prompts, so a checkpoint refuses other data."""

    def __init__(self, examples: list[Example], seed: int, shuffle: bool = True):
        self.examples = list(examples)  # epoch-0 order, as loaded: what state_dict's order indexes
        self.order = list(examples)
        self.seed, self.shuffle = seed, shuffle
        self.cursor, self.epoch = 0, 0

    def __len__(self) -> int:
        return len(self.examples)

    def next(self, n: int) -> list[Example]:
        out = []
        while len(out) < n:
            if self.cursor >= len(self.order):
                self.cursor, self.epoch = 0, self.epoch + 1
                if self.shuffle:
                    random.Random(self.seed + self.epoch).shuffle(self.order)  # in place: depends on history
            out.append(self.order[self.cursor])
            self.cursor += 1
        return out

    @functools.cached_property
    def _fingerprint(self) -> str:
        h = hashlib.sha256()
        for ex in self.examples:
            h.update(_fingerprint_text(ex).encode())
        return h.hexdigest()[:16]

    def fingerprint(self) -> str:
        """Of the prompts (a chat prompt's messages too) and answers in their epoch-0 order (fixed for the
        stream's life)."""
        return self._fingerprint

    def state_dict(self) -> dict:
        index = {id(ex): i for i, ex in enumerate(self.examples)}
        return {
            "cursor": self.cursor,
            "epoch": self.epoch,
            "order": [index[id(ex)] for ex in self.order],
            "fingerprint": self.fingerprint(),
        }

    def load_state_dict(self, state: dict) -> None:
        order = [
            int(i) for i in (state["order"].tolist() if hasattr(state["order"], "tolist") else state["order"])
        ]
        if state["fingerprint"] != self.fingerprint() or len(order) != len(self.examples):
            raise DataError(
                "the training data differs from the data this checkpoint was trained on (dataset, split, "
                "seed or max_prompt_length changed); resume with the run's own config.yaml"
            )
        self.order = [self.examples[i] for i in order]
        self.cursor, self.epoch = int(state["cursor"]), int(state["epoch"])
