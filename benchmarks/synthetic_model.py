"""Random models with real architectures and a synthetic tokenizer of the real vocabulary size, made locally.

No download is possible here, so a real-size model is its architecture with random weights, and its tokenizer a
byte-level BPE built from made-up merges (Qwen2's pre-tokenizer and ChatML specials) to exactly the vocabulary
size wanted. Shapes are what matter for memory and speed: the lm_head is 151,936 wide, sampling and the chunked
log-probs see the full vocabulary. Used by benchmarks/real_shapes.py and tests/integration/test_full_vocab.py.
"""

from __future__ import annotations

import itertools
from pathlib import Path

QWEN25_05B = dict(  # Qwen/Qwen2.5-0.5B-Instruct's config.json
    vocab_size=151936,
    hidden_size=896,
    intermediate_size=4864,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    max_position_embeddings=32768,
    rope_theta=1000000.0,
    tie_word_embeddings=True,
)
QWEN_TOKENIZER_SIZE = 151665  # regular tokens + specials in Qwen2.5's tokenizer (the model pads to 151936)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def byte_symbols() -> dict[int, str]:
    """The byte-level BPE alphabet (GPT-2's, which Qwen2 uses): printable Latin-1 bytes stand for themselves,
    every other byte for a code point from 256 up (space -> 'Ġ', newline -> 'Ċ')."""
    keep = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)}
    out, shifted = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b], shifted = chr(256 + shifted), shifted + 1
    return out


def synthetic_tokenizer(size: int = QWEN_TOKENIZER_SIZE):
    """A byte-level BPE of exactly `size` tokens: the 256 byte symbols, the specials, then merges of printable
    symbols into 2- and 3-symbol tokens in a fixed order. Reloads through AutoTokenizer as Qwen2Tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    symbols = byte_symbols()
    vocab = {s: i for i, s in enumerate(symbols.values())}  # 256 symbols, one per byte
    common = [symbols[b] for b in (*range(32, 127), 10)]  # printable ASCII (space = Ġ), newline
    merges = []
    target = size - len(SPECIALS)
    pairs = itertools.chain(
        ((a, b) for a in common for b in common),  # 2-symbol tokens
        ((a + b, c) for a in common for b in common for c in common),  # then 3-symbol ones
    )
    for left, right in pairs:
        if len(vocab) >= target:
            break
        token = left + right
        if token not in vocab and left in vocab and right in vocab:
            vocab[token] = len(vocab)
            merges.append((left, right))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIALS)
    assert tok.get_vocab_size() == size, tok.get_vocab_size()
    return tok


def save_model(directory: Path, arch: dict, tokenizer_size: int = QWEN_TOKENIZER_SIZE, seed: int = 0) -> Path:
    """A random Qwen2 with `arch` (a Qwen2Config's fields) and the synthetic tokenizer, saved to `directory`
    in bf16 as a hub checkpoint would be."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from gcpo_lite.demo.embedded_model import save_chatml_tokenizer

    raw = synthetic_tokenizer(tokenizer_size)
    save_chatml_tokenizer(raw, directory)
    config = Qwen2Config(
        **arch,
        bos_token_id=None,
        eos_token_id=raw.token_to_id("<|im_end|>"),
        pad_token_id=raw.token_to_id("<|endoftext|>"),
    )
    torch.manual_seed(seed)
    with torch.device("cpu"):
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(directory, safe_serialization=True)
    return directory
