"""Models whose logits are not hidden @ lm_head (issue 9, item 7): multipliers are applied, softcaps and biases
are refused before the weights load."""

import pytest
import torch

from gcpo_lite.config import ConfigError, ModelConfig
from gcpo_lite.data.collate import pad_batch
from gcpo_lite.models.output_head import check_head, check_supported, logit_multiplier
from gcpo_lite.policy.logprobs import completion_logprobs

TINY = dict(
    vocab_size=97,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
)


def _granite():
    from transformers import GraniteConfig, GraniteForCausalLM

    return GraniteForCausalLM(GraniteConfig(**TINY, logits_scaling=3.0))


def _cohere():
    from transformers import CohereConfig, CohereForCausalLM

    return CohereForCausalLM(CohereConfig(**TINY, logit_scale=0.37, tie_word_embeddings=False))


@pytest.mark.parametrize("build, multiplier", [(_granite, 1 / 3.0), (_cohere, 0.37)])
def test_training_logprobs_match_the_models_own_logits(build, multiplier):
    torch.manual_seed(0)
    model = build().eval()
    for p in model.parameters():  # a random init's logits are near 0: make the scale matter
        p.data.mul_(4.0) if p.dim() == 2 else None
    assert logit_multiplier(model.config) == pytest.approx(multiplier)
    prompts, completions = [[5, 6, 7], [8, 9]], [[10, 11, 12, 13], [14, 15]]
    rows = pad_batch(prompts, completions, 0, torch.device("cpu"))
    T = 0.7
    got = completion_logprobs(model, rows, temperature=T)
    for b, (p, c) in enumerate(zip(prompts, completions)):
        with torch.no_grad():
            logits = model(torch.tensor([p + c])).logits[0].float()  # (L, V), with the model's transform
        want = torch.log_softmax(logits / T, -1)[len(p) - 1 : -1].gather(-1, torch.tensor(c)[:, None])[:, 0]
        torch.testing.assert_close(got[b, : len(c)], want, rtol=1e-4, atol=1e-4)


def test_plain_models_have_multiplier_one():
    from transformers import Qwen2Config

    assert logit_multiplier(Qwen2Config(**TINY)) == 1.0


def test_softcapped_model_is_refused_before_its_weights_load(tmp_path):
    from transformers import Gemma2Config

    from gcpo_lite.models.loading import load_base_model

    Gemma2Config(**TINY, head_dim=8, final_logit_softcapping=30.0).save_pretrained(tmp_path)  # no weights
    with pytest.raises(ConfigError, match="final_logit_softcapping=30.0.*Use a model without it"):
        load_base_model(str(tmp_path), ModelConfig(quantize=False), torch.device("cpu"))
    check_supported(Gemma2Config(**TINY, head_dim=8, final_logit_softcapping=None))  # None: fine


def test_lm_head_with_bias_is_refused():
    with pytest.raises(ConfigError, match="lm_head has a bias"):
        check_head(torch.nn.Linear(4, 8, bias=True), "phi-like")
    check_head(torch.nn.Linear(4, 8, bias=False), "plain")
