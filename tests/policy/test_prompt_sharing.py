"""train.share_prompts: a micro-batch's distinct prompts run once and their rows' completions run on their
keys and values (gcpo_lite/prompt_sharing.py). Loss, log-probs and LoRA gradients equal the per-row forward's
to fp32 rounding, with and without gradient checkpointing, on Qwen2, Llama and a sliding-window Mistral."""

from __future__ import annotations

import logging

import pytest
import torch

from gcpo_lite.algorithm.update_rows import UpdateRows
from gcpo_lite.config import from_dict
from gcpo_lite.data.collate import pad_batch
from gcpo_lite.models.loading import decoder_and_head
from gcpo_lite.policy.logprobs import completion_logprobs, completion_loss
from gcpo_lite.policy.prompt_sharing import NotRouted, SharedPrompts
from gcpo_lite.train.trainer import Trainer

# 3 prompts of different lengths (so left padding differs), 3-4 rows each, completions of 1 to 9 tokens
PROMPTS = [[5, 9, 11, 3], [7, 2], [4, 4, 8, 12, 6, 1, 10]]
ROWS = [(0, [3, 5, 7, 9, 2]), (0, [8]), (0, [6, 6, 6, 6, 6, 6, 6, 6, 6]), (1, [2, 3]), (1, [9, 8, 7, 6]),
        (1, [1, 1, 1, 1, 1, 1]), (2, [4, 5, 6]), (2, [12]), (2, [3, 3, 11, 2, 5, 7, 1]), (2, [10, 2])]  # fmt: skip
LOSS_KW = dict(importance_sampling_level="sequence", epsilon_low=0.2, epsilon_high=0.28, beta=0.0,
               max_completion_length=9, normalizer=10.0)  # fmt: skip


def _lora_b_nonzero(model) -> None:
    """Random LoRA B: the adapters carry gradient into every layer, prompt positions included."""
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)


def _rows(pad_id: int):
    prompts = [PROMPTS[p] for p, _ in ROWS]
    return prompts, pad_batch(prompts, [c for _, c in ROWS], pad_id, torch.device("cpu"))


def _loss_and_grads(model, rows, prompts, share: bool, fused: bool, loss_type: str):
    """(loss, per-token log-probs, LoRA grads) of one forward + backward, per-row or shared prompts."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = None
    shared = SharedPrompts(decoder_and_head(model)[0], PROMPTS, 0, torch.device("cpu")) if share else None
    states = shared.for_rows(prompts) if share else None
    adv = torch.linspace(-1.0, 1.0, len(prompts))
    if fused:
        loss, _ = completion_loss(model, rows, None, adv, temperature=0.9, prompts=states, loss_type=loss_type,
                                  **LOSS_KW)  # fmt: skip
        lp = completion_logprobs(model, rows, temperature=0.9, prompts=states).detach()
    else:
        lp = completion_logprobs(model, rows, temperature=0.9, prompts=states)
        loss = (lp * adv[:, None]).sum() / 10.0
    loss.backward()
    if shared is not None:
        shared.backward()
    return loss.detach(), lp.detach(), [p.grad.clone() for p in params]


def _assert_same(model, pad_id: int, fused: bool = True, loss_type: str = "seq_mean_token_mean") -> None:
    prompts, rows = _rows(pad_id)
    loss0, lp0, g0 = _loss_and_grads(model, rows, prompts, False, fused, loss_type)
    loss1, lp1, g1 = _loss_and_grads(model, rows, prompts, True, fused, loss_type)
    torch.testing.assert_close(loss1, loss0, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(lp1, lp0, rtol=1e-5, atol=1e-5)
    assert all(g.abs().sum() > 0 for g in g0), "every LoRA weight carries gradient"
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize(
    "fused,loss_type", [(True, "seq_mean_token_mean"), (True, "token_mean"), (False, None)]
)
def test_shared_prompts_match_per_row_forward(embedded_policy, checkpointing, fused, loss_type):
    model, tok = embedded_policy
    _lora_b_nonzero(model)
    model.train()
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    try:
        _assert_same(model, int(tok.pad_token_id), fused, loss_type or "seq_mean_token_mean")
    finally:
        if checkpointing:
            model.gradient_checkpointing_disable()
        for p in model.parameters():
            p.grad = None


def _tiny_peft(kind: str):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

    shape = dict(vocab_size=16, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)  # fmt: skip
    torch.manual_seed(0)
    if kind == "llama":
        base = LlamaForCausalLM(LlamaConfig(**shape))
    else:  # a window shorter than prompt + completion: the window cuts into the shared prompt
        base = MistralForCausalLM(MistralConfig(**shape, sliding_window=5))
    base.config._attn_implementation = "sdpa"
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=targets))
    _lora_b_nonzero(model)
    return model.train()


@pytest.mark.parametrize("kind", ["llama", "mistral_sliding_window"])
def test_shared_prompts_on_other_architectures(kind):
    _assert_same(_tiny_peft(kind), pad_id=0)


def _trainer(model_dir, tmp_path, **train) -> Trainer:
    cfg = from_dict(
        {
            "model": {"name": str(model_dir), "gradient_checkpointing": True},
            "data": {"eval_size": 4},
            "gcpo": {
                "num_generations": 4,
                "max_completion_length": 12,
                "beta": 0.05,
                "loss_type": "token_mean",
            },
            "train": {"output_dir": str(tmp_path / "run"), "batch_size": 16, "device": "cpu", **train},
        }
    )
    torch.manual_seed(0)
    tr = Trainer(cfg, progress=False)
    _lora_b_nonzero(tr.model)
    return tr


def _micro_step_grads(tr: Trainer, batch, share: bool):
    """(loss / clip / KL sums, LoRA grads, reference log-probs) of the whole batch in one micro-step."""
    rows, _ = tr._rows_to_train(batch)
    work = UpdateRows(batch, rows, tr.cfg.gcpo.loss_type)
    tr._share_prompts = share
    ref = tr._per_row_logps(work, reference=True)  # beta > 0: the adapter-free base's, prompts shared too
    params = [p for p in tr.model.parameters() if p.requires_grad]
    for p in params:
        p.grad = None
    tr.model.train()
    sums = tr._micro_step(work, None, ref, 0, len(rows))  # 3 length buckets, each mixing groups
    return torch.tensor(sums), [p.grad.clone() for p in params], torch.cat(ref)


def test_trainer_micro_step_same_with_and_without_sharing(embedded_model_dir, tmp_path):
    tr = _trainer(embedded_model_dir, tmp_path, length_buckets=3)
    assert tr.cfg.train.share_prompts, "on by default"
    batch = tr.rollout(tr.next_examples(4))
    sums0, g0, ref0 = _micro_step_grads(tr, batch, False)
    sums1, g1, ref1 = _micro_step_grads(tr, batch, True)
    torch.testing.assert_close(ref1, ref0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sums1, sums0, rtol=1e-5, atol=1e-7)
    assert any(g.abs().sum() > 0 for g in g0)
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_a_model_that_ignores_the_cache_falls_back_with_a_warning(
    embedded_model_dir, tmp_path, monkeypatch, caplog
):
    tr = _trainer(embedded_model_dir, tmp_path)
    batch = tr.rollout(tr.next_examples(4))
    _, g0, _ = _micro_step_grads(tr, batch, False)

    def not_routed(decoder, ids, mask):
        raise NotRouted("Qwen2Model did not fill the cache it was given")

    monkeypatch.setattr("gcpo_lite.policy.prompt_sharing.run_prompts", not_routed)
    with caplog.at_level(logging.WARNING, logger="gcpo_lite.train.trainer"):
        _, g1, _ = _micro_step_grads(tr, batch, True)
    assert tr._share_prompts is False, "off for the rest of the run"
    assert "train.share_prompts is off for this run" in caplog.text
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_the_plan_counts_each_rows_prompt_keys_and_values():
    from gcpo_lite.memory import model as mm
    from gcpo_lite.memory.architectures import Architecture

    arch = Architecture(vocab_size=1000, hidden_size=64, intermediate_size=128, num_layers=3, num_heads=4,
                        num_kv_heads=2, head_dim=16, tie_word_embeddings=False)  # fmt: skip
    plain = mm.RunShape(prompt_tokens=20, completion_tokens=30, compute_dtype="float32", device="cpu")
    shared = mm.with_changes(plain, share_prompts=True)
    off, on = mm.training_bytes(arch, plain, 8, 64), mm.training_bytes(arch, shared, 8, 64)
    assert off["prompt_states"] == 0
    assert on["prompt_states"] == 8 * 20 * 3 * 2 * (2 * 16) * 4  # rows x P x layers x (k, v) x kv_dim x fp32
    assert mm.training_phase_bytes(on) == mm.training_phase_bytes(off) + on["prompt_states"]
