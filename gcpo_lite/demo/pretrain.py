"""The embedded demo's base model: the tiny random Qwen2 briefly fine-tuned on the built-in task.

Real base models start with partial skill, and GCPO is meant to improve such a base (the paper starts from
R1-Distill-Qwen-1.5B). A random model gets no correct sample at all, so from it GRPO learns nothing and GCPO
is mostly supervised learning on gold (issue 10). This base is the random embedded model after a short,
deterministic supervised fine-tune on the task's *training* prompts and their gold solutions: full
fine-tune in fp32, one thread (the same bits on every run on a machine), `STEPS` steps of `BATCH` examples.
Made once on first use (about 15 s on one core) and cached next to the random model; held-out accuracy of
the result is about 10-30% greedy (measured in docs/BENCHMARKS.md), before the 4-bit quantization the run
applies on top.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import tempfile
from pathlib import Path

import torch

log = logging.getLogger(__name__)

STEPS, BATCH, LR, SEED = 150, 256, 3e-3, 0  # measured: ~20% held-out greedy accuracy after 150 steps


def _batch(tok, prompts: list, answers: list, rng: random.Random):
    """BATCH (prompt, gold answer) pairs drawn with replacement, as padded ids and answer-only labels."""
    from gcpo_lite.data.collate import pad_batch

    picked = [rng.randrange(len(prompts)) for _ in range(BATCH)]
    rows = pad_batch(
        [prompts[i] for i in picked], [answers[i] for i in picked], tok.pad_token_id, torch.device("cpu")
    )
    ids = torch.cat([rows.prompt_ids, rows.completion_ids], 1)  # (B, P+T)
    attn = torch.cat([rows.prompt_mask, rows.completion_mask], 1)  # (B, P+T)
    completion_labels = rows.completion_ids.masked_fill(rows.completion_mask == 0, -100)
    labels = torch.cat(
        [torch.full_like(rows.prompt_ids, -100), completion_labels], 1
    )  # loss on the answer only
    return ids, attn, (attn.cumsum(-1) - 1).clamp(min=0), labels


def pretrain(random_dir: Path, out_dir: Path, task: str) -> Path:
    """Fine-tune the random model in random_dir on `task`'s training split; write it to out_dir (atomically)."""
    from transformers import AutoTokenizer, Qwen2ForCausalLM

    from gcpo_lite.config import DataConfig
    from gcpo_lite.data.datasets import load_examples
    from gcpo_lite.data.prompts import completion_ids_for_text, eos_token_ids, prompt_ids

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one summation order: the same base on every run on this machine
    try:
        tok = AutoTokenizer.from_pretrained(random_dir)
        torch.manual_seed(SEED)
        model = Qwen2ForCausalLM.from_pretrained(random_dir, dtype=torch.float32).train()
        train, _ = load_examples(DataConfig(dataset=task), SEED, tokenizer=tok)  # never the held-out split
        eos_ids = eos_token_ids(tok, model)
        prompts = [prompt_ids(tok, e) for e in train]  # tokenized once: each is drawn ~5 times
        answers = [completion_ids_for_text(tok, e, e.solution, eos_ids) for e in train]
        opt = torch.optim.AdamW(model.parameters(), lr=LR)
        rng = random.Random(SEED)
        for _ in range(STEPS):
            ids, attn, pos, labels = _batch(tok, prompts, answers, rng)
            loss = model(input_ids=ids, attention_mask=attn, position_ids=pos, labels=labels).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".", dir=out_dir.parent))
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    try:
        os.replace(tmp, out_dir)
    except OSError:  # another process made it first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
