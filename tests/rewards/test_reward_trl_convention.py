"""User reward functions in TRL's calling convention: TRL's documented examples run unchanged, and every
argument TRL passes (prompts, completions, completion_ids, the dataset's columns) arrives as TRL passes it."""

import re

from gcpo_lite.config import RewardConfig
from gcpo_lite.data.tasks import Example
from gcpo_lite.rewards.reward_model import build_reward_model


# TRL's documentation, "Using a custom reward function": example 2, a format reward for conversational data
def format_reward_func(completions, **kwargs):
    """Reward function that checks if the completion has a specific format."""
    pattern = r"^<think>.*?</think><answer>.*?</answer>$"
    completion_contents = [completion[0]["content"] for completion in completions]
    matches = [re.match(pattern, content) for content in completion_contents]
    return [1.0 if match else 0.0 for match in matches]


# TRL's documentation, "Using a custom reward function": example 1, a length reward for standard data
def reward_len(completions, **kwargs):
    return [-abs(20 - len(completion)) for completion in completions]


def recorder(calls):
    """A reward function that keeps every call's keyword arguments and scores 0.0 each."""

    def record(**kwargs):
        calls.append(kwargs)
        return [0.0] * len(kwargs["completions"])

    return record


def chat_example(question, answer="1"):
    messages = [
        {"role": "system", "content": "Think, then answer."},
        {"role": "user", "content": question},
    ]
    return Example(prompt=question, answer=answer, messages=messages, columns={"answer": answer})


def test_trl_length_reward_on_standard_form_unchanged():
    model = build_reward_model(RewardConfig(), "addition", functions=[reward_len])
    texts = ["x" * 20, "x" * 5, "x" * 27]
    examples = [Example(prompt=f"q{i}", answer=str(i)) for i in range(3)]
    scores = model.score_batch(texts, [[1]] * 3, examples)
    assert scores.rewards == [0.0, -15.0, -7.0]
    assert scores.per_function == {"reward_len": [0.0, -15.0, -7.0]}


def test_trl_format_reward_on_chat_form_unchanged():
    model = build_reward_model(RewardConfig(), "addition", functions=[format_reward_func])
    texts = [
        "<think>2 and 2</think><answer>4</answer>",
        "The answer is 4",
        "<think>hm</think> <answer>4</answer>",  # the space breaks TRL's pattern
    ]
    examples = [chat_example(f"what is {i}?") for i in range(3)]
    scores = model.score_batch(texts, [[]] * 3, examples)
    assert scores.rewards == [1.0, 0.0, 0.0]


def test_trl_format_reward_from_a_spec_file(tmp_path):
    source = """
import re

def format_reward_func(completions, **kwargs):
    pattern = r"^<think>.*?</think><answer>.*?</answer>$"
    completion_contents = [completion[0]["content"] for completion in completions]
    matches = [re.match(pattern, content) for content in completion_contents]
    return [1.0 if match else 0.0 for match in matches]
"""
    (tmp_path / "trl_rewards.py").write_text(source)
    spec = f"{tmp_path / 'trl_rewards.py'}:format_reward_func"
    model = build_reward_model(RewardConfig(functions=[spec]), "addition")
    scores = model.score_batch(
        ["<think>a</think><answer>b</answer>", "b"], [[], []], [chat_example("q1"), chat_example("q2")]
    )
    assert [f.name for f in model.functions] == ["format_reward_func"]
    assert scores.rewards == [1.0, 0.0]


def test_chat_form_passes_message_lists():
    calls = []
    model = build_reward_model(RewardConfig(), "addition", functions=[recorder(calls)])
    examples = [chat_example("first?"), chat_example("second?")]
    model.score_batch(["one", "two"], [[5, 6], [7]], examples)
    (kwargs,) = calls
    assert kwargs["prompts"] == [examples[0].messages, examples[1].messages]
    assert kwargs["completions"] == [
        [{"role": "assistant", "content": "one"}],
        [{"role": "assistant", "content": "two"}],
    ]
    assert kwargs["completion_ids"] == [[5, 6], [7]]


def test_standard_form_passes_strings():
    calls = []
    model = build_reward_model(RewardConfig(), "addition", functions=[recorder(calls)])
    examples = [Example(prompt="1+1=", answer="2"), Example(prompt="2+2=", answer="4")]
    model.score_batch(["2", "5"], [(3,), (4, 9)], examples)
    (kwargs,) = calls
    assert kwargs["prompts"] == ["1+1=", "2+2="]
    assert kwargs["completions"] == ["2", "5"]
    assert kwargs["completion_ids"] == [[3], [4, 9]]


def test_columns_arrive_as_lists_in_row_order():
    calls = []
    model = build_reward_model(RewardConfig(), "addition", functions=[recorder(calls)])
    examples = [
        Example(prompt="a", answer="1", columns={"difficulty": 3, "tag": "x"}),
        Example(prompt="b", answer="2", columns={"difficulty": 1}),
        Example(prompt="c", answer="3", columns={"source": "web", "difficulty": 2}),
    ]
    model.score_batch(["p", "q", "r"], [[], [], []], examples)
    (kwargs,) = calls
    assert kwargs["difficulty"] == [3, 1, 2]
    assert kwargs["tag"] == ["x", None, None]
    assert kwargs["source"] == [None, None, "web"]
    assert kwargs["final_answer"] == ["1", "2", "3"]


def test_final_answer_is_none_where_a_row_has_none():
    calls = []
    model = build_reward_model(RewardConfig(), "addition", functions=[recorder(calls)])
    examples = [Example(prompt="a", answer=None), Example(prompt="b", answer="7")]
    model.score_batch(["p", "q"], [[], []], examples)
    assert calls[0]["final_answer"] == [None, "7"]


def test_trainer_state_passed_as_trl_does():
    calls = []
    model = build_reward_model(RewardConfig(), "addition", functions=[recorder(calls)])
    examples = [Example(prompt="a", answer="1")]
    state = object()
    model.score_batch(["p"], [[]], examples, state=state)
    model.score_batch(["p"], [[]], examples)
    model.correct_batch(["p"], [[]], examples, state)
    assert calls[0]["trainer_state"] is state
    assert calls[1]["trainer_state"] is None  # always passed, as TRL does; None outside training
    assert calls[2]["trainer_state"] is state


def test_function_without_kwargs_catch_all_gets_its_named_arguments():
    def by_difficulty(prompts, completions, completion_ids, difficulty, final_answer, trainer_state):
        return [float(d) for d in difficulty]

    model = build_reward_model(RewardConfig(), "addition", functions=[by_difficulty])
    examples = [
        Example(prompt="a", answer="1", columns={"difficulty": 2}),
        Example(prompt="b", answer="1", columns={"difficulty": 5}),
    ]
    assert model.score_batch(["x", "y"], [[], []], examples).rewards == [2.0, 5.0]
