"""Prompt and gold-completion token ids, through the tokenizer's chat template.

The template renders chat.template_messages(example): a chat-form prompt's own messages, or [system?, user]
for a plain-text one. A plain-text prompt and a tokenizer with no chat template is the bare text; a chat-form
prompt needs a template (a DataError says so).

A gold completion is the reference solution written the way the policy would answer: the
chat template's assistant turn, cut after its first EOS token, exactly like a sampled
completion that stopped.
"""

from __future__ import annotations

from typing import Optional

from gcpo_lite.config.validation import shown
from gcpo_lite.data.chat import template_messages
from gcpo_lite.data.errors import DataError
from gcpo_lite.data.tasks import Example


def _no_template(example: Example) -> DataError:
    return DataError(
        f"the prompt {shown(example.prompt, 60)} is in chat form (a list of messages), but the tokenizer has no "
        "chat template to render it: set one (tokenizer.chat_template = ..., or a model whose tokenizer has "
        "one), or give the prompts as plain text"
    )


def uses_template(tokenizer, example: Example) -> bool:
    """Whether `example`'s prompt goes through the tokenizer's chat template; a chat-form prompt and a tokenizer
    without one is a DataError."""
    if getattr(tokenizer, "chat_template", None):
        return True
    if example.messages is not None:
        raise _no_template(example)
    return False


def check_chat_template(tokenizer, examples: list[Example]) -> None:
    """A DataError, before any training, when a chat-form prompt meets a tokenizer with no chat template."""
    chat = next((ex for ex in examples if ex.messages is not None), None)
    if chat is not None:
        uses_template(tokenizer, chat)


def prompt_ids(tokenizer, example: Example) -> list[int]:
    """Token ids of the prompt, ending where the assistant's answer starts."""
    if uses_template(tokenizer, example):
        msgs = template_messages(example)
        text = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        return tokenizer(text, add_special_tokens=False).input_ids
    return tokenizer(example.prompt, add_special_tokens=True).input_ids


def completion_ids_for_text(tokenizer, example: Example, text: str, eos_ids: set[int]) -> list[int]:
    """Ids of `text` as the assistant's completion of `example`'s prompt, ending in the token the chat template
    really closes the turn with (<|im_end|> for Qwen, <|eot_id|> for Llama-3), never an arbitrary EOS id."""
    end = turn_end_id(tokenizer, eos_ids)
    if uses_template(tokenizer, example):
        msgs = template_messages(example)
        prompt = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template(msgs + [{"role": "assistant", "content": text}], tokenize=False)
        # Use the template's rendering only when it keeps the text whole: some templates (R1-distill)
        # strip the reasoning before </think> from assistant turns, which would silently drop the gold's.
        if full.startswith(prompt) and text.strip() in full[len(prompt) :]:
            ids = tokenizer(full[len(prompt) :], add_special_tokens=False).input_ids
            for i, t in enumerate(ids):
                if t in eos_ids:
                    return ids[: i + 1]
            return ids + [end]
    return tokenizer(text, add_special_tokens=False).input_ids + [end]


def turn_end_id(tokenizer, eos_ids: set[int]) -> int:
    """The id that ends an assistant turn: the first EOS id the chat template puts after an assistant's text;
    without a template (or when it shows none), the tokenizer's own EOS when it is one of eos_ids."""
    if getattr(tokenizer, "chat_template", None):
        marker = "gcpo-lite-turn-marker"
        try:
            rendered = tokenizer.apply_chat_template(
                [{"role": "user", "content": "q"}, {"role": "assistant", "content": marker}], tokenize=False
            )
        except Exception:  # a template that refuses this shape: fall back below
            rendered = ""
        if marker in rendered:
            tail = tokenizer(rendered.split(marker, 1)[1], add_special_tokens=False).input_ids
            found = next((t for t in tail if t in eos_ids), None)
            if found is not None:
                return int(found)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id in eos_ids:
        return int(tokenizer.eos_token_id)
    return min(eos_ids)


def eos_token_ids(tokenizer, model=None) -> set[int]:
    """Every id that ends a completion: the tokenizer's EOS plus the model's generation-config EOS ids."""
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    gen = getattr(model, "generation_config", None) if model is not None else None
    extra = getattr(gen, "eos_token_id", None)
    if isinstance(extra, int):
        ids.add(extra)
    elif extra:
        ids.update(int(i) for i in extra)
    if not ids:
        raise ValueError("the tokenizer has no EOS token; set tokenizer.eos_token before training")
    return ids


def suppressed_ids(
    tokenizer, eos_ids: set[int], configured: Optional[list], vocab_size: Optional[int] = None
) -> list[int]:
    """Ids that are never sampled and are masked out of training log-probs.

    Default: the pad token when it is not also an EOS id. A token banned while sampling but
    allowed in training would have negative advantages push probability onto it. A configured id at or
    above vocab_size (the model's output size; default len(tokenizer)) is a DataError: no logit has it."""
    if configured is not None:
        size = len(tokenizer) if vocab_size is None else int(vocab_size)
        beyond = [int(i) for i in configured if not 0 <= int(i) < size]
        if beyond:
            raise DataError(
                f"gcpo.suppress_tokens has {beyond[0]}, but this model's vocabulary has {size} ids (0 to "
                f"{size - 1}); remove it, or set gcpo.suppress_tokens=null to suppress only the pad token"
            )
        return sorted(int(i) for i in configured)
    pad = tokenizer.pad_token_id
    return [int(pad)] if pad is not None and pad not in eos_ids else []
