"""The embedded tiny model: a random Qwen2 with a BPE tokenizer trained on the built-in task's text, made on
first use and cached (the demo's pretrained base is made from it by pretrain.py)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Optional

import torch

from gcpo_lite.models.loading import ResolvedModel, resolve_model
from gcpo_lite.models.registry import (
    EMBEDDED_ARCH,
    EMBEDDED_BASE_NAME,
    EMBEDDED_NAME,
    embedded_base_dir,
    embedded_model_dir,
)

log = logging.getLogger(__name__)

EMBEDDING_INIT_STD = 0.15
CHAT_TEMPLATE = (  # Qwen2's ChatML layout, without the default system message
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_tokenizer(corpus: list[str]):
    """A byte-level BPE with Qwen2's pre-tokenizer (digits split one by one) and ChatML specials.

    Reloads through AutoTokenizer as Qwen2Tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Tokenizer  # noqa: F401 (import checks availability)
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    # Only the characters the task uses: a small vocab keeps random sampling near the answer space, which
    # is what lets the demo learn within minutes (a 256-byte alphabet made it ~10x slower to start).
    trainer = trainers.BpeTrainer(vocab_size=48, special_tokens=specials, show_progress=False)
    chat = ["<|im_start|>user\n", "<|im_end|>\n", "<|im_start|>assistant\n", "user", "assistant", "system"]
    tok.train_from_iterator(corpus + chat * 50, trainer=trainer)
    return tok


def save_chatml_tokenizer(raw, directory: Path) -> None:
    """Save a `tokenizers.Tokenizer` with ChatML specials as a Qwen2 tokenizer (EOS <|im_end|>, pad
    <|endoftext|>, the ChatML template), which AutoTokenizer reloads as Qwen2's own class."""
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(directory)
    tcfg_path = Path(directory) / "tokenizer_config.json"
    tcfg = json.loads(tcfg_path.read_text())
    tcfg["tokenizer_class"] = "Qwen2Tokenizer"
    tcfg_path.write_text(json.dumps(tcfg, indent=2))


def chatml_qwen2_config(raw, arch: dict):
    """A Qwen2Config of architecture `arch` (layers, widths, heads) for the ChatML tokenizer `raw` (a tokenizers
    BPE from build_tiny_tokenizer): its vocabulary, <|im_end|> as EOS, <|endoftext|> as padding."""
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=raw.get_vocab_size(),
        **arch,
        bos_token_id=None,
        eos_token_id=raw.token_to_id("<|im_end|>"),
        pad_token_id=raw.token_to_id("<|endoftext|>"),
        use_cache=True,
    )


def create_embedded_model(directory: Path, seed: int = 0) -> Path:
    """Write the tiny random Qwen2 model and its tokenizer to `directory` (atomically)."""
    import tempfile

    from transformers import Qwen2ForCausalLM

    from gcpo_lite.data.tasks import DEFAULT_TASK, TASKS

    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=directory.name + ".", dir=directory.parent))
    raw = build_tiny_tokenizer(TASKS[DEFAULT_TASK].corpus())
    save_chatml_tokenizer(raw, tmp)
    config = chatml_qwen2_config(raw, EMBEDDED_ARCH)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    # The base stays frozen, so the output layer's scale is fixed for good. With the usual 0.02 init its rows
    # are so short that no hidden state (RMS-normed to norm ~8) reaches a logit above ~1, and LoRA could
    # never make a confident prediction. std 0.15 allows logits up to ~10. The output layer is untied and
    # independent of the input embedding, so the residual stream (dominated by the input token at init)
    # does not make the random model copy its input with certainty: sampling starts near uniform.
    with torch.no_grad():
        model.get_input_embeddings().weight.normal_(0.0, EMBEDDING_INIT_STD)
        model.get_output_embeddings().weight.normal_(0.0, EMBEDDING_INIT_STD)
    model.save_pretrained(tmp, safe_serialization=True)
    try:
        os.replace(tmp, directory)
    except OSError:  # another process created it first: keep theirs
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def ensure_embedded_model(name: str = EMBEDDED_NAME) -> Path:
    """The embedded model `name` (the random one, or the demo's pretrained base), created on first use."""
    d = embedded_model_dir()
    if not (d / "config.json").is_file():
        log.info("creating the embedded tiny model in %s (once)", d)
        create_embedded_model(d)
    if name != EMBEDDED_BASE_NAME:
        return d
    base = embedded_base_dir()
    if not (base / "config.json").is_file():
        from gcpo_lite.data.tasks import DEFAULT_TASK
        from gcpo_lite.demo.pretrain import pretrain

        log.info("gcpo-lite: pretraining the demo's base model once (%s, ~25 s)", base)
        pretrain(d, base, DEFAULT_TASK)
    return base


def prepare_model(name: Optional[str]) -> ResolvedModel:
    """What --model names (resolve_model), with the embedded model's files made first when it names one."""
    resolved = resolve_model(name)
    if resolved.embedded:
        ensure_embedded_model(resolved.display)
    return resolved
