"""Gold formatting: a final \\boxed{} when missing, thinking tags for R1-distill, verification and failure counts."""

import pytest
from chat_tokenizers import byte_level_chat_tokenizer

from gcpo_lite.algorithm.gold import (
    Gold,
    choose_gold_slot,
    gold_solution_text,
    inject,
    make_gold,
    should_inject,
)
from gcpo_lite.data.tasks import Example

MATH = Example(
    prompt="Compute 1/2 + 1/4.",
    answer="\\frac{3}{4}",
    solution="We get $\\frac{2}{4}+\\frac14 = \\boxed{\\frac{3}{4}}$.",
)
GSM = Example(prompt="Apples?", answer="72", solution="She sold 48/2 = 24 in May.\nSo 48+24 = 72 in total.")
R1 = Example(
    prompt="1+1?", answer="2", solution="<think>\nOne plus one is two.\n</think>\n\nSo $1+1=\\boxed{2}$."
)
BARE = Example(prompt="AIME", answer="204", solution=None)


def test_plain_models_get_the_solution_with_a_box():
    assert gold_solution_text(MATH, "qwen2") == MATH.solution  # already boxed: unchanged
    text = gold_solution_text(GSM, "qwen2")
    assert text.startswith(GSM.solution) and text.endswith("The final answer is $\\boxed{72}$.")
    assert gold_solution_text(R1, "llama") == "So $1+1=\\boxed{2}$."  # the written part of an R1 trace
    assert gold_solution_text(BARE, "qwen2") == "The final answer is $\\boxed{204}$."


def test_r1_distill_gets_thinking_tags():
    text = gold_solution_text(GSM, "r1_distill")
    assert (
        text.startswith("<think>\n" + GSM.solution)
        and "</think>\n\nThe final answer is $\\boxed{72}$." in text
    )
    text = gold_solution_text(MATH, "r1_distill")
    assert text.startswith("<think>\nWe get") and text.endswith("\\boxed{\\frac{3}{4}}$.")
    assert (
        gold_solution_text(R1, "r1_distill")
        == "<think>\nOne plus one is two.\n</think>\n\nSo $1+1=\\boxed{2}$."
    )
    # the R1-Distill template's generation prompt may already open the block
    assert gold_solution_text(R1, "r1_distill", prompt_opens_think=True).startswith("One plus one")


def _check(ex, family="qwen2", max_len=10_000, overflow="skip"):
    """make_gold with the math reward the trainer uses, on a whitespace tokenizer."""
    from gcpo_lite.rewards.reward_model import RewardModel, resolve_verifier

    words: list[str] = []
    rewards = RewardModel.from_verifier(resolve_verifier("math", "gsm8k", False), 0.0)

    def tokenize(text):
        words[:] = text.split(" ")
        return list(range(len(words)))

    return make_gold(
        gold_solution_text(ex, family),
        tokenize=tokenize,
        score=lambda ids: rewards.score(" ".join(words[i] for i in ids), ex),
        max_len=max_len,
        overflow=overflow,
    )


def test_gold_is_verified_with_the_reward_function():
    for ex in (MATH, GSM, R1, BARE):
        for family in ("qwen2", "r1_distill"):
            gold = _check(ex, family)
            assert gold.status == "ok" and gold.reward == 1.0, (ex, family)
    wrong = Example(prompt="q", answer="5", solution="so the result is \\boxed{6}")
    assert _check(wrong).status == "failed_verification" and _check(wrong).ids is None
    assert make_gold(None, tokenize=list, score=None, max_len=9, overflow="skip").status == "missing"
    assert _check(GSM, max_len=3).status == "skipped_overflow"
    truncated = _check(GSM, max_len=3, overflow="truncate")
    assert truncated.status == "truncated" and len(truncated.ids) == 3


@pytest.mark.parametrize(
    "mode, correct, expected",
    [
        ("all_wrong", [False, False], True),
        ("all_wrong", [True, False], False),
        ("all_wrong", [True, True], False),
        ("never", [False, False], False),
        ("always", [True, True], True),
    ],
)
def test_injection_trigger(mode, correct, expected):
    assert should_inject(mode, correct) is expected


def test_gold_slot_lowest_reward_then_lowest_logprob():
    assert choose_gold_slot([0.5, 0.0, 0.2], [-1, -1, -9]) == 1
    assert choose_gold_slot([0.0, 0.0, 0.0], [-1.0, -3.0, -2.0]) == 1


def test_inject_is_pure_and_reads_only_the_golds_it_needs():
    asked = []

    class Golds:
        def __init__(self, golds):
            self.golds = golds

        def __getitem__(self, g):
            asked.append(g)
            return self.golds[g]

    ok, bad = Gold([7, 8], 1.0), Gold(None, 0.0, "failed_verification")
    rewards = [0.0, 0.0, 1.0, 0.0, 0.0, 0.0]  # 3 groups of G=2: group 1 has a success
    correct = [False, False, True, False, False, False]
    mean_lp = [-1.0, -2.0, -1.0, -1.0, -1.0, -1.0]
    slots, statuses = inject(rewards, correct, mean_lp, Golds([ok, ok, bad]), 2, "all_wrong")
    assert slots == {1: ok} and statuses == {"ok": 1, "failed_verification": 1} and asked == [0, 2]
    assert inject(rewards, correct, mean_lp, Golds([ok] * 3), 2, "never") == ({}, {})
    slots, _ = inject(rewards, correct, mean_lp, Golds([ok] * 3), 2, "always")
    assert sorted(slots) == [1, 3, 4]


class _Template:
    def __init__(self, suffix):
        self.suffix = suffix

    def apply_chat_template(self, messages, add_generation_prompt, tokenize):
        return "<｜User｜>" + messages[-1]["content"] + "<｜Assistant｜>" + self.suffix


def test_prompt_opens_think():
    from gcpo_lite.algorithm.gold import prompt_opens_think

    assert prompt_opens_think(_Template("<think>\n"))
    assert not prompt_opens_think(_Template(""))
    assert not prompt_opens_think(object())  # no chat template at all


def _byte_level_chat_tokenizer():
    """A small byte-level BPE (every byte representable, unlike the embedded model's 48-token vocab) with ChatML."""
    return byte_level_chat_tokenizer([MATH.solution, GSM.solution, R1.solution], vocab_size=400)


def test_gold_text_survives_the_chat_template():
    """gold text -> prompts.completion_ids_for_text (the trainer's path) -> decode -> still verifies."""
    from gcpo_lite.data.prompts import completion_ids_for_text, eos_token_ids
    from gcpo_lite.rewards.reward_model import RewardModel, resolve_verifier

    verify = RewardModel.from_verifier(resolve_verifier("math", "gsm8k", False)).correct
    tok = _byte_level_chat_tokenizer()
    eos = eos_token_ids(tok)
    for ex in (MATH, GSM, R1, BARE):
        for family in ("qwen2", "r1_distill"):
            text = gold_solution_text(ex, family)
            ids = completion_ids_for_text(tok, ex, text, eos)
            assert ids[-1] in eos
            decoded = tok.decode(ids, skip_special_tokens=True)
            assert decoded.strip() == text.strip() and verify(decoded, ex), (decoded, text)


def _family_tokenizer(specials, eos, turn_end, template):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(["the answer is 42"] * 5, trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token=eos, pad_token=specials[0])
    tok.chat_template = template
    eos_ids = {tok.convert_tokens_to_ids(eos), tok.convert_tokens_to_ids(turn_end)}
    return tok, eos_ids, tok.convert_tokens_to_ids(turn_end)


QWEN = (
    ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
    "<|endoftext|>",
    "<|im_end|>",
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
)
LLAMA3 = (
    ["<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
    "<|end_of_text|>",
    "<|eot_id|>",
    "{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] }}"
    "<|eot_id|>{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n"
    "{% endif %}",
)


@pytest.mark.parametrize("family", [QWEN, LLAMA3], ids=["qwen", "llama3"])
def test_gold_ends_with_the_turn_end_token(family):
    """Not min(eos_ids): <|im_end|> for Qwen, <|eot_id|> for Llama-3-Instruct (issue 9, item 6)."""
    from gcpo_lite.data.prompts import completion_ids_for_text, turn_end_id

    tok, eos_ids, turn_end = _family_tokenizer(*family)
    assert min(eos_ids) != turn_end  # the old choice would have been wrong here
    assert turn_end_id(tok, eos_ids) == turn_end
    ex = Example(prompt="q", answer="42", solution="42")
    ids = completion_ids_for_text(tok, ex, "the answer is 42", eos_ids)
    assert ids[-1] == turn_end and list(ids).count(turn_end) == 1
    tok.chat_template = None  # no template: the turn ends in the tokenizer's own EOS
    assert completion_ids_for_text(tok, ex, "42", eos_ids)[-1] == tok.eos_token_id
