"""Data loading: built-in task, presets through the hub code path (local mirrors written here), local files,
field mapping, missing-column errors, splits, seeded shuffle, prompt-length filter."""

import json

import pytest

from gcpo_lite.config import DataConfig
from gcpo_lite.data import presets
from gcpo_lite.data.datasets import load_examples, load_split
from gcpo_lite.data.errors import DataError
from gcpo_lite.data.examples import filter_by_prompt_length
from gcpo_lite.data.tasks import Example

datasets = pytest.importorskip("datasets")

GSM8K_ROWS = [
    {
        "question": f"Q{i}: how many?",
        "answer": f"She has {i} + 1 = <<{i}+1={i + 1}>>{i + 1} apples.\n#### {i + 1:,}",
    }
    for i in range(998, 1010)
]
MATH_ROWS = [
    {
        "problem": f"Compute {i}/2.",
        "level": "Level 1",
        "type": "Algebra",
        "solution": f"Halving gives $\\boxed{{\\frac{{{i}}}{{2}}}}$.",
    }
    for i in range(1, 11)
]


def _hub_mirror(root, config, splits: dict):
    """A local directory laid out like a hub dataset repo: README configs + one parquet per split."""
    root.mkdir(parents=True, exist_ok=True)
    files = []
    for split, rows in splits.items():
        (root / (config or "data")).mkdir(exist_ok=True)
        rel = f"{config or 'data'}/{split}-00000-of-00001.parquet"
        datasets.Dataset.from_list(rows).to_parquet(str(root / rel))
        files.append(f"      - split: {split}\n        path: {rel}")
    (root / "README.md").write_text(
        "---\nconfigs:\n  - config_name: "
        + (config or "default")
        + "\n    data_files:\n"
        + "\n".join(files)
        + "\n---\n"
    )
    return str(root)


@pytest.fixture
def mirror(monkeypatch, tmp_path):
    def use(preset_name, config, splits):
        path = _hub_mirror(tmp_path / preset_name, config, splits)
        monkeypatch.setitem(presets.PRESETS, preset_name, presets.with_hub_id(preset_name, path))

    return use


def test_builtin_addition_needs_no_network():
    train, held_out = load_examples(DataConfig(), seed=0)
    assert len(held_out) == 200 and len(train) == 7600
    assert held_out[0].answer == str(eval(held_out[0].prompt.rstrip("=")))


def test_gsm8k_preset_through_the_hub_code_path(mirror):
    mirror("gsm8k", "main", {"train": GSM8K_ROWS[:8], "test": GSM8K_ROWS[8:]})
    train, test = load_examples(DataConfig(dataset="gsm8k", eval_size=10), seed=0)
    assert len(train) == 8 and len(test) == 4
    ex = next(e for e in train if e.prompt.startswith("Q999"))
    assert ex.answer == "1000"  # after ####, thousands comma removed
    assert "<<" not in ex.solution and "####" not in ex.solution  # calculator notes and #### line dropped
    assert ex.solution.endswith("1000 apples.")
    assert ex.prompt == "Q999: how many?\n\n" + presets.MATH_INSTRUCTION  # presets ask for a boxed answer


def test_hub_id_of_a_preset_gets_its_mapping(mirror):
    mirror("gsm8k", "main", {"train": GSM8K_ROWS[:4], "test": GSM8K_ROWS[4:6]})
    assert presets.find_preset("openai/gsm8k").answer_from == "gsm8k"
    assert presets.find_preset("MATH-500") is presets.PRESETS["math500"]


def test_math_preset_answer_from_last_box(mirror):
    mirror("math", "default", {"train": MATH_ROWS[:6], "test": MATH_ROWS[6:]})
    test = load_split(DataConfig(dataset="math"), "test")
    assert [e.answer for e in test] == [f"\\frac{{{i}}}{{2}}" for i in range(7, 11)]
    assert test[0].solution.startswith("Halving")


def test_benchmark_presets_map_splits(mirror, caplog):
    rows = [
        {
            "id": i,
            "problem": f"P{i}",
            "solution": f"so \\boxed{{{i}}}",
            "answer": str(i),
            "url": "",
            "year": "2024",
        }
        for i in range(30)
    ]
    mirror("aime24", None, {"train": rows})  # the hub repo has only a train split
    train, test = load_examples(DataConfig(dataset="aime24", eval_size=30, shuffle=False), seed=0)
    assert len(test) == 30 and len(train) == 30
    assert "contaminates" in caplog.text
    assert len(load_split(DataConfig(dataset="aime24"), "test")) == 30


def test_openr1_gold_is_a_verified_r1_trace(mirror):
    rows = [
        {
            "problem": "1+1?",
            "solution": "Two.",
            "answer": "2",
            "uuid": "a",
            "generations": ["<think>maybe 3</think> \\boxed{3}", "<think>1+1=2</think> \\boxed{2}"],
            "correctness_math_verify": [False, True],
        },
        {
            "problem": "2+2?",
            "solution": "Four: 4.",
            "answer": "4",
            "uuid": "b",
            "generations": ["<think>x</think> \\boxed{5}"],
            "correctness_math_verify": [False],
        },
    ]
    proof = {
        "problem": "Prove it.",
        "solution": "...",
        "answer": "proof",
        "uuid": "c",
        "generations": ["x"],
        "correctness_math_verify": [True],
    }
    mirror("openr1", "default", {"train": rows * 5 + [proof]})  # proofs have no checkable answer: skipped
    train, held_out = load_examples(
        DataConfig(dataset="openr1", eval_size=2), seed=0
    )  # no test split: carved
    assert len(train) == 8 and len(held_out) == 2
    by_prompt = {e.prompt.split("\n")[0]: e for e in train + held_out}
    assert by_prompt["1+1?"].solution == "<think>1+1=2</think> \\boxed{2}"
    assert by_prompt["2+2?"].solution == "Four: 4."  # no verified trace: the original solution


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "parquet"])
def test_local_files_with_field_mapping(tmp_path, fmt):
    rows = [{"q": f"What is {i}+{i}?", "final": str(2 * i), "work": f"{i}+{i}={2 * i}"} for i in range(20)]
    path = tmp_path / f"d.{fmt}"
    ds = datasets.Dataset.from_list(rows)
    if fmt == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows))
    elif fmt == "json":
        ds.to_json(str(path), lines=False)
    elif fmt == "csv":
        ds.to_csv(str(path), index=False)
    else:
        ds.to_parquet(str(path))
    cfg = DataConfig(
        dataset=str(path), prompt_field="q", answer_field="final", solution_field="work", eval_size=5
    )
    train, held_out = load_examples(cfg, seed=1)
    assert len(train) == 15 and len(held_out) == 5
    assert all(e.solution.endswith("=" + e.answer) for e in train + held_out)


def test_saved_dataset_directories(tmp_path):
    datasets.Dataset.from_list([{"prompt": f"p{i}", "answer": str(i)} for i in range(12)]).save_to_disk(
        str(tmp_path / "ds")
    )
    train, held_out = load_examples(DataConfig(dataset=str(tmp_path / "ds"), eval_size=2), seed=0)
    assert len(train) == 10 and len(held_out) == 2 and train[0].solution is None
    splits = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list([{"prompt": "a", "answer": "1"}] * 5),
            "test": datasets.Dataset.from_list([{"prompt": "b", "answer": "2"}] * 3),
        }
    )
    splits.save_to_disk(str(tmp_path / "dd"))
    train, held_out = load_examples(DataConfig(dataset=str(tmp_path / "dd")), seed=0)
    assert {e.prompt for e in train} == {"a"} and [e.prompt for e in held_out] == ["b"] * 3


def test_missing_field_lists_columns_and_the_fix(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"question": "q", "target": "1"}) + "\n")
    with pytest.raises(DataError) as err:
        load_examples(DataConfig(dataset=str(path)), seed=0)
    msg = str(err.value)
    assert "'prompt'" in msg and "question, target" in msg and "--prompt-field" in msg
    with pytest.raises(DataError, match="answer.*available columns: question, target.*--answer-field"):
        load_examples(DataConfig(dataset=str(path), prompt_field="question"), seed=0)


def test_missing_file_and_unreachable_hub_say_what_to_do(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="not found"):
        load_examples(DataConfig(dataset=str(tmp_path / "nope.jsonl")), seed=0)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="preset .*gsm8k"):
        load_examples(DataConfig(dataset=str(tmp_path / "no-such-dir")), seed=0)


def test_seeded_shuffle(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": f"p{i}", "answer": str(i)}) for i in range(50)))
    cfg = DataConfig(dataset=str(path), eval_size=10)
    a, _ = load_examples(cfg, seed=3)
    b, _ = load_examples(cfg, seed=3)
    c, _ = load_examples(cfg, seed=4)
    assert [e.prompt for e in a] == [e.prompt for e in b] != [e.prompt for e in c]
    unshuffled, _ = load_examples(DataConfig(dataset=str(path), eval_size=10, shuffle=False), seed=3)
    assert sorted(e.prompt for e in unshuffled) == sorted(e.prompt for e in a)


class WordTokenizer:
    """One token per whitespace-separated word: lengths a test can count by eye."""

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [t.split() for t in texts]}


def test_prompt_length_filter_counts_drops(tmp_path):
    examples = [Example(prompt=" ".join(["w"] * n), answer="1") for n in (1, 5, 10, 11, 50)]
    kept, dropped = filter_by_prompt_length(examples, WordTokenizer(), max_tokens=10)
    assert [len(e.prompt.split()) for e in kept] == [1, 5, 10] and dropped == 2
    kept, dropped = filter_by_prompt_length(examples, None, 3, to_ids=lambda tok, ex: ex.prompt.split())
    assert dropped == 4


def test_load_examples_applies_the_filter(tmp_path, caplog):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": "w " * (i % 7 + 1), "answer": "1"}) for i in range(70)))
    cfg = DataConfig(dataset=str(path), eval_size=10, max_prompt_length=3)
    train, held_out = load_examples(cfg, seed=0, tokenizer=WordTokenizer())
    assert all(len(e.prompt.split()) <= 3 for e in train + held_out)
    assert "dropped" in caplog.text and "max_prompt_length=3" in caplog.text


def test_generic_hendrycks_style_data_takes_the_boxed_answer(tmp_path):
    path = tmp_path / "math.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in MATH_ROWS))
    train, held_out = load_examples(
        DataConfig(dataset=str(path), prompt_field="problem", eval_size=2), seed=0
    )
    assert all(e.answer.startswith("\\frac{") and e.answer in e.solution for e in train + held_out)


def test_data_errors_are_config_errors():
    from gcpo_lite.config import ConfigError

    assert issubclass(DataError, ConfigError)  # the CLI prints them without a traceback


def test_builtin_held_out_split_is_the_same_for_every_seed():
    """Runs with different seeds are scored on the same prompts, none of which the demo's pretrained base (made
    from the training split) has seen (issue 10)."""
    _, held0 = load_examples(DataConfig(), seed=0)
    train5, held5 = load_examples(DataConfig(), seed=5)
    assert [e.prompt for e in held0] == [e.prompt for e in held5]
    assert not {e.prompt for e in held5} & {e.prompt for e in train5}
