"""Valid files load whatever their first rows hold; values that are not answers, paths that are not datasets and
token ids beyond the vocabulary are refused in one line (issue 28)."""

import json

import pytest

from gcpo_lite.config import DataConfig
from gcpo_lite.data.datasets import load_split
from gcpo_lite.data.errors import DataError
from gcpo_lite.data.prompts import suppressed_ids


def load(path, **kw):
    return load_split(DataConfig(dataset=str(path), **kw), "train")


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return path


def test_an_optional_key_first_seen_at_row_100000_still_loads(tmp_path):
    filler = "x" * 120  # rows long enough that row 100,000 lies past the first block a reader infers from
    rows = ({"prompt": f"{i} {filler}", "answer": str(i)} for i in range(100_000))
    path = write_jsonl(tmp_path / "late.jsonl", rows)
    with open(path, "a") as f:
        f.write(json.dumps({"prompt": "last", "answer": "7", "solution": "3 + 4 = 7"}) + "\n")
    examples = load(path)
    assert len(examples) == 100_001
    assert examples[0].solution is None and examples[-1].solution == "3 + 4 = 7"


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_a_20mb_first_row_without_the_optional_key_still_loads(tmp_path, suffix):
    rows = [
        {"prompt": "p" * 20_000_000, "answer": "1"},
        {"prompt": "q", "answer": "2", "solution": "1 + 1 = 2", "extra": [1, 2]},
    ]
    path = tmp_path / f"big{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(rows))
    else:
        write_jsonl(path, rows)
    examples = load(path)
    assert [e.answer for e in examples] == ["1", "2"]
    assert [e.solution for e in examples] == [None, "1 + 1 = 2"]


def test_columns_of_mixed_types_and_one_object_files_still_load(tmp_path):
    path = write_jsonl(
        tmp_path / "m.jsonl", [{"prompt": 12, "answer": 3}, {"prompt": "b", "answer": "x + 1"}]
    )
    assert [(e.prompt, e.answer) for e in load(path)] == [("12", "3"), ("b", "x + 1")]
    one = tmp_path / "one.json"
    one.write_text(json.dumps({"prompt": "a", "answer": "1"}))
    assert [(e.prompt, e.answer) for e in load(one)] == [("a", "1")]


def test_a_dict_answer_is_refused_naming_the_row_and_the_column(tmp_path):
    rows = [{"prompt": "a", "answer": "1"}, {"prompt": "b", "answer": {"a": 1}}]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(DataError) as e:
        load(path)
    message = str(e.value)
    assert "row 2" in message and "'answer'" in message and "dict" in message, message
    assert "--answer-field" in message and "\n" not in message


def test_a_list_answer_is_a_comma_separated_answer(tmp_path, caplog):
    rows = [
        {"prompt": "roots of x^2-3x+2?", "answer": [1, 2]},
        {"prompt": "none", "answer": []},
        {"prompt": "c", "answer": ["-1", "1/2"]},
    ]
    examples = load(write_jsonl(tmp_path / "l.jsonl", rows))
    assert [e.answer for e in examples] == ["1, 2", "-1, 1/2"]  # the verifier compares comma lists unordered
    assert "skipped 1 of 3 rows with no checkable final answer" in caplog.text
    assert "3 rows hold a list in the answer column 'answer', each read as one comma-separated" in caplog.text


@pytest.mark.parametrize("answer", [[[1, 2], 3], [{"x": 1}], [None, 1]])
def test_a_nested_list_answer_is_refused(tmp_path, answer):
    path = write_jsonl(
        tmp_path / "n.jsonl", [{"prompt": "a", "answer": "1"}, {"prompt": "b", "answer": answer}]
    )
    with pytest.raises(DataError, match="row 2.*'answer'.*list"):
        load(path)


def test_a_dict_solution_is_refused(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", [{"prompt": "a", "answer": "1", "solution": {"steps": []}}])
    with pytest.raises(DataError, match="row 1.*solution column 'solution'.*dict.*--solution-field"):
        load(path)


def test_an_existing_txt_file_is_named_for_what_it_is(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("1+1=2\n")
    with pytest.raises(DataError) as e:
        load(path)
    message = str(e.value)
    assert "does not exist" not in message and "is a .txt file" in message, message
    assert ".jsonl" in message and ".parquet" in message


def test_an_existing_directory_is_named_for_what_it_is(tmp_path):
    folder = tmp_path / "rows"
    folder.mkdir()
    (folder / "train.jsonl").write_text('{"prompt": "a", "answer": "1"}\n')
    with pytest.raises(DataError) as e:
        load(folder)
    message = str(e.value)
    assert "does not exist" not in message and "is a directory" in message, message
    assert "save_to_disk" in message and ".jsonl" in message
    with pytest.raises(DataError, match="does not exist"):  # a path with nothing there still says so
        load(tmp_path / "missing")


class _Tokenizer:
    pad_token_id = 0

    def __len__(self):
        return 100


def test_a_suppressed_id_beyond_the_vocabulary_is_refused_in_one_line():
    assert suppressed_ids(_Tokenizer(), {1}, [5, 99]) == [5, 99]
    with pytest.raises(DataError) as e:
        suppressed_ids(_Tokenizer(), {1}, [5, 999_999])
    message = str(e.value)
    assert "gcpo.suppress_tokens has 999999" in message and "100" in message and "\n" not in message
    assert suppressed_ids(_Tokenizer(), {1}, [150], vocab_size=151) == [150]  # the model's own output size
