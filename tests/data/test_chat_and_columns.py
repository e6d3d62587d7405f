"""Bring-your-own-task data: chat-form prompts (TRL's conversational format), every other column kept in
Example.columns, datasets without a final answer (needs_answer=False), datasets handed over in memory, and the
PromptStream fingerprint of chat prompts."""

import hashlib
import json
import logging

import pytest
from chat_tokenizers import byte_level_chat_tokenizer

from gcpo_lite.config import DataConfig
from gcpo_lite.data.chat import template_messages
from gcpo_lite.data.datasets import load_examples, load_split
from gcpo_lite.data.errors import DataError
from gcpo_lite.data.examples import filter_by_prompt_length, rows_to_examples
from gcpo_lite.data.files import JsonRows
from gcpo_lite.data.presets import find_preset
from gcpo_lite.data.prompt_stream import PromptStream
from gcpo_lite.data.prompts import completion_ids_for_text, prompt_ids
from gcpo_lite.data.tasks import Example

datasets = pytest.importorskip("datasets")


@pytest.fixture(scope="module")
def chat_tok():
    """A small byte-level BPE (any text encodes) with the embedded model's ChatML template."""
    return byte_level_chat_tokenizer(["system user assistant What is 1+1? You are terse."])


def chat(question, system=None):
    return ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": question}
    ]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def rendered_ids(tok, messages):
    """What the chat template makes of `messages`, tokenized: the ids prompt_ids must give."""
    text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return tok(text, add_special_tokens=False).input_ids


# ---------------------------------------------------------------- chat-form prompts


def test_a_chat_jsonl_file_loads_end_to_end(tmp_path, chat_tok):
    rows = [{"prompt": chat(f"What is {i}+1?"), "answer": str(i + 1), "level": i % 3} for i in range(12)]
    cfg = DataConfig(dataset=write_jsonl(tmp_path / "chat.jsonl", rows), eval_size=2)
    train, held_out = load_examples(cfg, seed=0, tokenizer=chat_tok)
    assert len(train) == 10 and len(held_out) == 2
    for ex in train + held_out:
        i = int(ex.answer) - 1
        assert ex.messages == chat(f"What is {i}+1?") and ex.prompt == f"What is {i}+1?"
        assert ex.columns == {"answer": str(i + 1), "level": i % 3}
        assert prompt_ids(chat_tok, ex) == rendered_ids(chat_tok, ex.messages)


def test_prompt_ids_of_a_chat_example_is_its_rendered_template(chat_tok):
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 1+1?"},
        {"role": "assistant", "content": "2"},
        {"role": "user", "content": "What is 2+1?"},
    ]
    ex = Example(prompt="What is 2+1?", answer="3", messages=messages)
    ids = prompt_ids(chat_tok, ex)
    assert ids == rendered_ids(chat_tok, messages)
    direct = chat_tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    assert ids == list(direct["input_ids"] if hasattr(direct, "keys") else direct)
    eos = {chat_tok.eos_token_id}
    gold = completion_ids_for_text(chat_tok, ex, "3", eos)
    assert chat_tok.decode(ids + gold) == chat_tok.apply_chat_template(
        messages + [{"role": "assistant", "content": "3"}], tokenize=False
    ).rstrip("\n")


def test_a_chat_prompt_needs_a_chat_template(tmp_path, chat_tok):
    from transformers import PreTrainedTokenizerFast

    bare = PreTrainedTokenizerFast(tokenizer_object=chat_tok.backend_tokenizer, eos_token="<|im_end|>")
    ex = Example(prompt="What is 1+1?", answer="2", messages=chat("What is 1+1?"))
    with pytest.raises(DataError, match="chat form.*no chat template.*plain text"):
        prompt_ids(bare, ex)
    with pytest.raises(DataError, match="no chat template"):
        completion_ids_for_text(bare, ex, "2", {bare.eos_token_id})
    path = write_jsonl(tmp_path / "c.jsonl", [{"prompt": chat("What is 1+1?"), "answer": "2"}] * 3)
    with pytest.raises(DataError, match="no chat template"):  # at load time, before any training
        load_examples(DataConfig(dataset=path, eval_size=1), seed=0, tokenizer=bare)
    plain = Example(prompt="What is 1+1?", answer="2")
    assert prompt_ids(bare, plain) == bare("What is 1+1?", add_special_tokens=True).input_ids  # as before


def test_system_prompt_is_added_only_to_chats_without_one(tmp_path, chat_tok, caplog):
    rows = [{"prompt": chat("What is 1+1?"), "answer": "2"}] + [
        {"prompt": chat(f"What is {i}+1?", system="Their own."), "answer": str(i + 1)} for i in range(2, 5)
    ]
    cfg = DataConfig(dataset=write_jsonl(tmp_path / "s.jsonl", rows), system_prompt="You are terse.")
    with caplog.at_level(logging.WARNING):
        examples = load_split(cfg, "train")
    plain, *own = examples
    assert template_messages(plain) == chat("What is 1+1?", system="You are terse.")
    assert prompt_ids(chat_tok, plain) == rendered_ids(
        chat_tok, chat("What is 1+1?", system="You are terse.")
    )
    for ex in own:
        assert template_messages(ex) == ex.messages and ex.messages[0]["content"] == "Their own."
        assert prompt_ids(chat_tok, ex) == rendered_ids(chat_tok, ex.messages)
    warnings = [r for r in caplog.records if "own system message" in r.getMessage()]
    assert len(warnings) == 1 and "3 of 4 chat prompts" in warnings[0].getMessage()  # one per dataset


def test_a_preset_instruction_is_not_appended_to_chat_prompts():
    gsm8k = find_preset("gsm8k")
    rows = JsonRows(
        [
            {"question": chat("Apples?"), "answer": "24 + 48 = 72\n#### 72"},
            {"question": "Pears?", "answer": "1 + 1 = 2\n#### 2"},
        ]
    )
    chat_ex, plain_ex = rows_to_examples(rows, DataConfig(), "gsm8k", gsm8k)
    assert chat_ex.messages == chat("Apples?") and chat_ex.prompt == "Apples?" and chat_ex.answer == "72"
    assert plain_ex.messages is None and plain_ex.prompt.startswith(
        "Pears?\n\n"
    )  # the instruction, as before
    assert chat_ex.columns == {"answer": "24 + 48 = 72\n#### 72"}  # the raw column, not the parsed answer


BAD_PROMPTS = [
    (["What is 1+1?"], r"message 1 is a str \('What is 1\+1\?'\), not a \{'role', 'content'\} dict"),
    ([{"role": "user"}], "message 1 has no 'content' key"),
    ([{"content": "hi"}], "message 1 has no 'role' key"),
    ([{"role": "user", "content": 3}], "message 1 has a int content \\(3\\), not a string"),
    ([{"role": "user", "content": ["a"]}], "message 1 has a list content"),
    ([{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}], "message 2 has the role 'robot'"),
    ([], "holds an empty list of chat messages"),
    ([{"role": "system", "content": "Be brief."}], "no user message"),
]


@pytest.mark.parametrize("prompt, needle", BAD_PROMPTS)
def test_bad_chat_messages_name_the_row_and_what_is_wrong(tmp_path, prompt, needle):
    rows = [{"prompt": chat("fine"), "answer": "1"}, {"prompt": prompt, "answer": "2"}]
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError, match=needle) as err:
        load_split(DataConfig(dataset=path), "train")
    msg = str(err.value)
    assert "bad.jsonl: row 2" in msg and "prompt column 'prompt'" in msg
    if "user message" not in needle:
        assert '"role": "system" | "user" | "assistant"' in msg  # how to fix it


def test_the_default_length_filter_counts_every_chat_message():
    class Words:
        def __call__(self, texts, add_special_tokens=False):
            return {"input_ids": [t.split() for t in texts]}

    short = Example(prompt="a b", answer="1", messages=chat("a b"))
    long_history = [{"role": "user", "content": "w " * 20}, {"role": "assistant", "content": "ok"}]
    long = Example(prompt="a b", answer="1", messages=long_history + chat("a b"))
    with_system = Example(prompt="a b", answer="1", system="x " * 20, messages=chat("a b"))
    kept, dropped = filter_by_prompt_length([short, long, with_system], Words(), max_tokens=10)
    assert kept == [short] and dropped == 2
    plain = Example(prompt="a b c", answer="1", system="s")  # the old count: "s\na b c" = 4 words
    assert filter_by_prompt_length([plain], Words(), max_tokens=4) == ([plain], 0)
    assert filter_by_prompt_length([plain], Words(), max_tokens=3) == ([], 1)


# ---------------------------------------------------------------- columns and answers


def test_extra_columns_land_in_example_columns_unchanged(tmp_path):
    extra = {"n": 7, "tags": ["a", "b"], "meta": {"source": "x", "scores": [1, 2.5], "deep": {"ok": True}}}
    rows = [
        {"prompt": "q1", "answer": "1", "solution": "so 1", **extra},
        {"prompt": "q2", "answer": 2, "n": 8},
    ]
    examples = load_split(DataConfig(dataset=write_jsonl(tmp_path / "x.jsonl", rows)), "train")
    assert examples[0].columns == {"answer": "1", "solution": "so 1", **extra}
    assert examples[1].columns == {"answer": 2, "solution": None, "n": 8, "tags": None, "meta": None}
    assert examples[1].answer == "2"  # the parsed answer is text; the column keeps the int


def test_builtin_examples_carry_answer_and_solution_columns():
    train, held_out = load_examples(DataConfig(eval_size=3), seed=0)
    for ex in train[:3] + held_out:
        assert ex.columns == {"answer": ex.answer, "solution": ex.solution} and ex.messages is None


def test_needs_answer_false_takes_data_without_answers(tmp_path, caplog):
    rows = [{"prompt": f"Write a poem about {i}.", "topic": i} for i in range(6)]
    path = write_jsonl(tmp_path / "poems.jsonl", rows)
    with pytest.raises(DataError, match="no column 'answer' for the answer.*--answer-field"):  # as before
        load_examples(DataConfig(dataset=path, eval_size=2), seed=0)
    train, held_out = load_examples(DataConfig(dataset=path, eval_size=2), seed=0, needs_answer=False)
    assert len(train) == 4 and len(held_out) == 2
    assert all(ex.answer is None and ex.columns == {"topic": int(ex.prompt[19])} for ex in train + held_out)
    partial = [
        {"prompt": "a", "answer": "1"},
        {"prompt": "b", "answer": None},
        {"prompt": "c", "answer": " "},
    ]
    path = write_jsonl(tmp_path / "partial.jsonl", partial)
    assert [e.answer for e in load_split(DataConfig(dataset=path), "train", needs_answer=False)] == [
        "1",
        None,
        None,
    ]
    assert "no checkable final answer" not in caplog.text
    assert [e.answer for e in load_split(DataConfig(dataset=path), "train")] == ["1"]  # needs_answer: skipped
    assert "skipped 2 of 3 rows with no checkable final answer" in caplog.text


def test_needs_answer_false_still_refuses_a_named_answer_column_that_is_missing(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "a"}])
    with pytest.raises(DataError, match="no column 'final'"):
        load_split(DataConfig(dataset=path, answer_field="final"), "train", needs_answer=False)


# ---------------------------------------------------------------- datasets in memory and on disk


def test_a_list_of_dicts_as_train_and_eval_dataset():
    train_rows = [{"prompt": f"p{i}", "answer": str(i)} for i in range(8)] + [{"prompt": "p8", "hint": "h"}]
    eval_rows = [{"prompt": chat("e0"), "answer": "0"}]
    cfg = DataConfig(dataset="addition", eval_size=5)
    train, held_out = load_examples(
        cfg, seed=0, needs_answer=False, train_rows=train_rows, eval_rows=eval_rows
    )
    assert sorted(e.prompt for e in train) == [f"p{i}" for i in range(9)]  # addition is not read
    assert {e.prompt: e.columns for e in train}["p8"] == {"answer": None, "hint": "h"}  # union of keys
    assert [e.messages for e in held_out] == [chat("e0")]


def test_a_train_dataset_without_eval_dataset_is_carved(tmp_path):
    ds = datasets.Dataset.from_list([{"prompt": chat(f"q{i}"), "answer": str(i), "k": i} for i in range(10)])
    train, held_out = load_examples(DataConfig(eval_size=3), seed=1, train_rows=ds)
    assert len(train) == 7 and len(held_out) == 3
    assert {e.prompt for e in train + held_out} == {f"q{i}" for i in range(10)}
    assert all(
        e.messages == chat(e.prompt) and e.columns == {"answer": e.answer, "k": int(e.answer)} for e in train
    )
    again, _ = load_examples(DataConfig(eval_size=3), seed=1, train_rows=ds)
    assert [e.prompt for e in again] == [e.prompt for e in train]  # seeded


def test_a_dataset_as_eval_dataset_replaces_the_held_out_split(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"prompt": f"t{i}", "answer": str(i)} for i in range(6)])
    ds = datasets.Dataset.from_list([{"prompt": "e", "answer": "1"}] * 2)
    train, held_out = load_examples(DataConfig(dataset=path, eval_size=3), seed=0, eval_rows=ds)
    assert len(train) == 6 and [e.prompt for e in held_out] == ["e", "e"]  # nothing carved off train


@pytest.mark.parametrize(
    "rows, needle",
    [
        (
            lambda: datasets.DatasetDict({"train": datasets.Dataset.from_list([{"prompt": "a"}])}),
            r"train_dataset is a DatasetDict \(splits: train\); pass one split, e.g. train_dataset=dataset\['train'\]",
        ),
        (lambda: {"prompt": ["a"], "answer": ["1"]}, "train_dataset is a dict; pass a datasets.Dataset"),
        (lambda: "data.jsonl", "train_dataset is a str; pass a datasets.Dataset"),
        (lambda: [{"prompt": "a", "answer": "1"}, "b"], r"train_dataset\[1\] is a str \('b'\), not a dict"),
        (lambda: [], "train_dataset has no rows"),
        (
            lambda: [{"question": "a", "answer": "1"}],
            "train_dataset: no column 'prompt'.*available columns: question",
        ),
    ],
)
def test_bad_train_datasets_say_what_they_are(rows, needle):
    with pytest.raises(DataError, match=needle):
        load_examples(DataConfig(), seed=0, train_rows=rows())


def test_a_bad_eval_dataset_is_named_as_such():
    good = [{"prompt": "a", "answer": "1"}] * 4
    with pytest.raises(DataError, match=r"eval_dataset is a DatasetDict.*eval_dataset=dataset\['test'\]"):
        load_examples(DataConfig(), seed=0, train_rows=good, eval_rows=datasets.DatasetDict())
    with pytest.raises(
        DataError, match="eval_dataset: row 1: the prompt column 'prompt' holds an empty list"
    ):
        load_examples(DataConfig(), seed=0, train_rows=good, eval_rows=[{"prompt": [], "answer": "1"}])


def test_a_saved_dataset_with_chat_prompts_and_extra_columns(tmp_path, chat_tok):
    rows = [
        {
            "prompt": chat(f"q{i}", system="Sys."),
            "answer": str(i),
            "level": i,
            "meta": {"src": "s", "ids": [i, 1]},
        }
        for i in range(6)
    ]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    train, held_out = load_examples(
        DataConfig(dataset=str(tmp_path / "saved"), eval_size=2), 0, tokenizer=chat_tok
    )
    assert len(train) == 4 and len(held_out) == 2
    for ex in train + held_out:
        i = int(ex.answer)
        assert ex.messages == chat(f"q{i}", system="Sys.") and ex.prompt == f"q{i}"
        assert ex.columns == {"answer": str(i), "level": i, "meta": {"src": "s", "ids": [i, 1]}}
        assert prompt_ids(chat_tok, ex) == rendered_ids(chat_tok, ex.messages)


# ---------------------------------------------------------------- the PromptStream fingerprint


def old_fingerprint(examples):
    """The formula every checkpoint before chat prompts was written with."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(f"{ex.prompt}\x00{ex.answer}\x01".encode())
    return h.hexdigest()[:16]


def test_the_fingerprint_of_plain_prompts_is_unchanged():
    train, _ = load_examples(DataConfig(eval_size=3), seed=0)
    assert PromptStream(train, seed=0).fingerprint() == old_fingerprint(train)
    mixed = [Example("q", None), Example("r", "1", columns={"x": 1})]
    assert PromptStream(mixed, seed=0).fingerprint() == old_fingerprint(mixed)


def test_the_fingerprint_of_chat_prompts_includes_their_messages():
    a = Example("q", "1", messages=chat("q", system="A"))
    b = Example("q", "1", messages=chat("q", system="B"))
    reordered = Example("q", "1", messages=[{"content": m["content"], "role": m["role"]} for m in a.messages])
    fa, fb = PromptStream([a], 0).fingerprint(), PromptStream([b], 0).fingerprint()
    assert fa != fb and fa != old_fingerprint([a])
    assert PromptStream([reordered], 0).fingerprint() == fa  # keys sorted
