"""Bad dataset files get errors naming the file and the line; null prompts never train as "None"."""

import json

import pytest

from gcpo_lite.config import DataConfig
from gcpo_lite.data.datasets import load_split
from gcpo_lite.data.errors import DataError


def load(path, **kw):
    return load_split(DataConfig(dataset=str(path), **kw), "train")


def test_null_and_empty_prompts_are_skipped_and_counted(tmp_path, caplog):
    path = tmp_path / "d.jsonl"
    rows = [
        {"prompt": "1+1?", "answer": "2"},
        {"prompt": None, "answer": "3"},
        {"prompt": "  ", "answer": "4"},
        {"prompt": "2+2?", "answer": "4"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    examples = load(path)
    assert [e.prompt for e in examples] == ["1+1?", "2+2?"]
    assert "skipped 2 of 4 rows with a null or empty prompt" in caplog.text


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
def test_empty_file_names_the_file(tmp_path, suffix):
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(b"")
    with pytest.raises(DataError, match=f"{path.name} is empty"):
        load(path)


def test_blank_lines_only(tmp_path):
    path = tmp_path / "blank.jsonl"
    path.write_text("\n  \n")
    with pytest.raises(DataError, match="no rows"):
        load(path)


def test_invalid_json_line_names_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "a", "answer": "1"}\n\n{"prompt": "b", "answer": 2,,}\n')
    with pytest.raises(DataError, match=r"bad.jsonl: line 3 is not valid JSON"):
        load(path)


def test_invalid_json_file_names_the_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[\n {"prompt": "a", "answer": "1"},\n {"prompt": oops}\n]\n')
    with pytest.raises(DataError, match=r"bad.json: not valid JSON at line 3"):
        load(path)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_non_utf8_bytes_name_the_file_and_line(tmp_path, suffix):
    path = tmp_path / f"latin{suffix}"
    good = '{"prompt": "a", "answer": "1"}\n' if suffix == ".jsonl" else "prompt,answer\na,1\n"
    bad = '{"prompt": "caf\xe9", "answer": "1"}\n' if suffix == ".jsonl" else "caf\xe9,1\n"
    path.write_bytes(good.encode() + bad.encode("latin-1"))
    line = 2 if suffix == ".jsonl" else 3
    with pytest.raises(DataError, match=rf"line {line} is not UTF-8.*0xe9.*re-save the file as UTF-8"):
        load(path)


def test_a_cli_run_on_a_bad_file_is_one_sentence(tmp_path, capsys):
    from gcpo_lite.cli import main

    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "a", "answer": "1"}\n{oops\n')
    code = main(
        [
            "train",
            "--dataset",
            str(path),
            "--output-dir",
            str(tmp_path / "run"),
            "--no-progress",
            "--max-steps",
            "1",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "line 2 is not valid JSON" in err and "Traceback" not in err


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    # Windows editors write one; `datasets` reads such files, so the pre-check must not refuse them
    rows = '{"prompt": "a", "answer": "1"}\n{"prompt": "b", "answer": "2"}\n'
    for name, text in [
        ("bom.jsonl", rows),
        ("bom.json", '[{"prompt": "a", "answer": "1"}]'),
        ("bom.csv", "prompt,answer\na,1\n"),
    ]:
        path = tmp_path / name
        path.write_bytes(b"\xef\xbb\xbf" + text.encode())
        assert [e.prompt for e in load(path)][:1] == ["a"]


@pytest.mark.parametrize(
    "name, text, needle",
    [
        ("empty.json", "[]", "has no rows \\(an empty JSON array\\)"),
        (
            "item.json",
            '[{"prompt": "a", "answer": "1"}, 3]',
            "item 1 of the top-level array is a JSON number",
        ),
        ("str.json", '"rows"', "holds a JSON string; a .json dataset is an array of objects"),
        ("null.jsonl", '{"prompt": "a", "answer": "1"}\nnull\n', "line 2 is a JSON null, not an object"),
        ("header.csv", "prompt,answer\n", "has a header line but no data rows"),
        ("quote.csv", 'prompt,answer\n"a,1\n', "could not read dataset file .*quote.csv.*valid csv"),
        ("bad.parquet", "not parquet", "could not read dataset file .*bad.parquet.*valid parquet"),
    ],
)
def test_malformed_files_say_what_is_wrong_with_the_file(tmp_path, name, text, needle):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DataError, match=needle) as err:
        load(path)
    assert "hub id" not in str(err.value)  # a local file gets no advice about the hub


def test_a_dict_prompt_is_refused_not_trained_as_its_repr(tmp_path):
    """A list of chat messages is a chat-form prompt (tests/data/test_chat_and_columns.py); a dict is neither."""
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps({"prompt": {"role": "user", "content": "1+1?"}, "answer": "2"}) + "\n")
    with pytest.raises(
        DataError, match="row 1: the prompt column 'prompt' holds a dict, not text.*--prompt-field"
    ):
        load(path)


def test_numbers_as_prompts_and_answers_still_load(tmp_path):
    path = tmp_path / "n.jsonl"
    path.write_text('{"prompt": 12, "answer": 3}\n{"prompt": "b", "answer": "4"}\n')
    assert [(e.prompt, e.answer) for e in load(path)] == [("12", "3"), ("b", "4")]
