"""Bad input gets one sentence saying what is wrong and how to fix it, exit 2, no traceback (--debug keeps it)."""

import json

import pytest

from gcpo_lite.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    err = capsys.readouterr().err
    return code, err


def assert_clean(code, err, *needles):
    assert code == 2, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) <= 3, err
    for needle in needles:
        assert needle in err, err


@pytest.fixture
def files(tmp_path):
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    (tmp_path / "scalar.yaml").write_text("42\n")
    (tmp_path / "section.yaml").write_text("train: 5\n")
    (tmp_path / "intkey.yaml").write_text("train:\n  1: 2\n")
    (tmp_path / "nullkey.yaml").write_text("~: {}\n")
    (tmp_path / "unhashable.yaml").write_text("? [a]\n: 1\n")
    (tmp_path / "notyamlvalue.yaml").write_text('train:\n  seed: "[1"\n')
    (tmp_path / "cfgdir").mkdir()
    return tmp_path


@pytest.mark.parametrize(
    "name, needle",
    [
        ("list.yaml", "got a list"),
        ("scalar.yaml", "got an int"),
        ("section.yaml", "section 'train' must be a mapping"),
    ],
)
def test_config_file_of_the_wrong_shape(files, capsys, name, needle):
    assert_clean(*run_cli(capsys, "train", "--config", str(files / name)), needle)


@pytest.mark.parametrize(
    "name, needle",
    [
        ("intkey.yaml", "unknown config key train.1"),
        ("nullkey.yaml", "unknown config key section None"),
        ("unhashable.yaml", "not valid YAML (found unhashable key at line 1, column 3)"),
        ("notyamlvalue.yaml", "train.seed='[1' should be an int"),
    ],
)
def test_config_file_with_odd_keys_or_values(files, capsys, name, needle):
    assert_clean(*run_cli(capsys, "train", "--config", str(files / name)), needle)


@pytest.mark.parametrize(
    "override, needle",
    [
        ("memory.min_num_generations=abc", "memory.min_num_generations='abc' should be an int"),
        ("train.batch_size=[1]", "train.batch_size=[1] should be an int"),
    ],
)
def test_auto_group_size_with_a_non_number(capsys, override, needle):
    assert_clean(
        *run_cli(capsys, "plan", "--memory-budget", "8GiB", "--num-generations", "auto", override), needle
    )


def test_config_that_is_a_directory(files, capsys):
    assert_clean(*run_cli(capsys, "train", "--config", str(files / "cfgdir")), "is a directory")


def test_override_of_a_section_with_a_scalar(capsys):
    assert_clean(*run_cli(capsys, "train", "train=5"), "section.key")


def test_override_value_that_is_not_yaml(capsys):
    assert_clean(
        *run_cli(capsys, "train", "lora.target_modules=[q_proj"), "not valid YAML", "lora.target_modules"
    )


def model_dir(tmp_path, name, config):
    d = tmp_path / name
    d.mkdir()
    if config is not None:
        (d / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    return d


SIZES = {
    "hidden_size": 64,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "intermediate_size": 128,
    "vocab_size": 100,
    "model_type": "qwen2",
}


@pytest.mark.parametrize(
    "name, config, needle",
    [
        ("noconfig", None, "has no config.json"),
        ("malformed", "{not json", "is not valid JSON"),
        ("zero", {**SIZES, "hidden_size": 0}, "hidden_size=0"),
        ("zeroheads", {**SIZES, "num_attention_heads": 0}, "num_attention_heads=0"),
        ("negative", {**SIZES, "num_hidden_layers": -2}, "num_hidden_layers=-2"),
        ("text", {**SIZES, "vocab_size": "lots"}, "vocab_size='lots'"),
        ("list", "[1, 2]", "not an object"),
        ("number", "5", "holds a JSON number"),
        ("null", "null", "holds a JSON null"),
        ("infinite", {**SIZES, "hidden_size": float("inf")}, "hidden_size=inf"),
        ("nan", {**SIZES, "vocab_size": float("nan")}, "vocab_size=nan"),
        ("zerokv", {**SIZES, "num_key_value_heads": 0}, "num_key_value_heads=0"),
        ("zeroheaddim", {**SIZES, "head_dim": 0}, "head_dim=0"),
    ],
)
def test_plan_with_a_bad_model_directory(tmp_path, capsys, name, config, needle):
    d = model_dir(tmp_path, name, config)
    assert_clean(*run_cli(capsys, "plan", "--model", str(d), "--memory-budget", "8GiB"), needle)


def test_plan_with_an_unknown_model(capsys):
    assert_clean(
        *run_cli(capsys, "plan", "--model", "qwen9-huge", "--memory-budget", "8GiB"),
        "no architecture numbers for model 'qwen9-huge'",
    )


@pytest.mark.parametrize(
    "budget, needle",
    [
        ("", "empty"),
        ("2PiB", "above 1 PiB"),
        ("99999TB", "above 1 PiB"),
        ("0GiB", "positive"),
        ("lots", "not understood"),
        ("9" * 400 + "GiB", "above 1 PiB"),
    ],
)
def test_memory_budget_is_checked(capsys, budget, needle):
    assert_clean(*run_cli(capsys, "plan", "--memory-budget", budget), needle)


def test_config_memory_budget_is_checked(capsys):
    assert_clean(*run_cli(capsys, "train", "memory.memory_budget=''"), "empty")


def test_train_model_dir_without_tokenizer_fails_before_loading(tmp_path, capsys, embedded_model_dir):
    import shutil

    d = tmp_path / "model"
    shutil.copytree(embedded_model_dir, d)
    for f in d.iterdir():
        if f.name.startswith(("tokenizer", "vocab", "merges", "special_tokens", "chat_template")):
            f.unlink()
    code, err = run_cli(
        capsys, "train", "--model", str(d), "--output-dir", str(tmp_path / "run"), "--no-progress"
    )
    assert_clean(code, err, "has no tokenizer")


@pytest.mark.parametrize(
    "config, needle",
    [
        ("{not json", "cannot be read as JSON"),
        ("[1, 2]", "holds a JSON list"),
        ('{"_name_or_path": 5}', "no tokenizer"),
    ],
)
def test_train_model_dir_with_a_bad_config_fails_before_loading(
    tmp_path, capsys, monkeypatch, config, needle
):
    import gcpo_lite.models.loading as models

    def no_weights(*a, **k):
        raise AssertionError("weights loaded before the model directory was checked")

    monkeypatch.setattr(models, "load_base_model", no_weights)
    d = model_dir(tmp_path, "model", config)
    if needle != "no tokenizer":
        (d / "tokenizer.json").write_text("{}")
    code, err = run_cli(
        capsys, "train", "--model", str(d), "--output-dir", str(tmp_path / "run"), "--no-progress"
    )
    assert_clean(code, err, needle)


def test_full_disk_is_one_sentence(monkeypatch, capsys):
    import errno

    import gcpo_lite.commands.plan as plan_cmd

    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", "/runs/x/metrics.jsonl")

    monkeypatch.setattr(plan_cmd, "run", full)
    assert_clean(*run_cli(capsys, "plan"), "no space left on device writing /runs/x/metrics.jsonl")


def test_bugs_keep_their_traceback(monkeypatch):
    import gcpo_lite.commands.plan as plan_cmd

    monkeypatch.setattr(plan_cmd, "run", lambda args: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        main(["plan"])


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_keeps_the_traceback(tmp_path, where):
    from gcpo_lite.config import ConfigError

    d = model_dir(tmp_path, "m", "{not json")
    argv = ["plan", "--model", str(d)]
    argv = ["--debug", *argv] if where == "before" else [*argv, "--debug"]
    with pytest.raises(ConfigError, match="not valid JSON"):
        main(argv)


def test_debug_after_the_subcommand_of_a_parsed_command(files):
    from gcpo_lite.config import ConfigError

    with pytest.raises(ConfigError, match="is a directory"):
        main(["train", "--config", str(files / "cfgdir"), "--debug"])


# ---------------------------------------------------------------- absurd sizes, deep nesting, files as models


@pytest.mark.parametrize(
    "name, config, needle",
    [
        ("hugefloat", {**SIZES, "hidden_size": 1e300}, "hidden_size=1e+300, above"),
        ("hugeint", {**SIZES, "vocab_size": 10**38}, f"vocab_size={10**38}, above"),
        ("deep", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
)
def test_plan_with_absurd_model_config(tmp_path, capsys, name, config, needle):
    d = model_dir(tmp_path, name, config)
    assert_clean(*run_cli(capsys, "plan", "--model", str(d), "--memory-budget", "8GiB"), needle)


def _no_weights(monkeypatch):
    import gcpo_lite.models.loading as models

    def no_weights(*a, **k):
        raise AssertionError("weights loaded before the model was checked")

    monkeypatch.setattr(models, "load_base_model", no_weights)


@pytest.mark.parametrize(
    "what, needle",
    [
        ("file", "is a file, not a model directory"),
        ("config.json", "is a file, not a model directory"),
        ("hugedir", "hidden_size=1e+300, above"),
        ("deepdir", "nested too deeply"),
    ],
)
def test_train_model_that_is_a_file_or_absurd_fails_before_loading(
    tmp_path, capsys, monkeypatch, what, needle
):
    _no_weights(monkeypatch)
    if what == "file":
        target = tmp_path / "weights.bin"
        target.write_bytes(b"\0" * 16)
    elif what == "config.json":
        target = model_dir(tmp_path, "m", SIZES) / "config.json"
    else:
        config = {**SIZES, "hidden_size": 1e300} if what == "hugedir" else "[" * 100_000 + "]" * 100_000
        target = model_dir(tmp_path, what, config)
        (target / "tokenizer.json").write_text("{}")
    code, err = run_cli(
        capsys, "train", "--model", str(target), "--output-dir", str(tmp_path / "run"), "--no-progress"
    )
    assert_clean(code, err, needle)


def test_empty_model_name(capsys):
    assert_clean(*run_cli(capsys, "plan", "--model", "", "--memory-budget", "8GiB"), "model.name is empty")


@pytest.mark.parametrize(
    "override, needle",
    [
        ("train.output_dir=[1]", "train.output_dir=[1] should be a str; quote it"),
        ("data.system_prompt=a: b", "data.system_prompt={'a': 'b'} should be a str or null; quote it"),
        ("lora.target_modules=[]", "must be a non-empty list of module names"),
        ("lora.target_modules=[[q_proj]]", "must be a non-empty list of module names"),
        ("lora.target_modules=[1, 2]", "must be a non-empty list of module names"),
        ("gcpo.suppress_tokens=[a]", "gcpo.suppress_tokens has 'a'"),
        ("gcpo.suppress_tokens=[-1]", "gcpo.suppress_tokens has -1"),
    ],
)
def test_override_of_the_wrong_shape_is_refused_not_stringified(capsys, override, needle):
    assert_clean(*run_cli(capsys, "plan", "--memory-budget", "8GiB", override), needle)


@pytest.mark.parametrize(
    "override",
    [
        "train.seed=" + "[" * 20_000,
        "lora.target_modules=" + "[" * 20_000 + "]" * 20_000,
        "train.seed=" + "[1," * 20_000 + "]",
    ],
)
def test_huge_or_deep_override_gives_a_short_message(capsys, override):
    code, err = run_cli(capsys, "plan", "--memory-budget", "8GiB", override)
    assert_clean(code, err, "chars")
    assert len(err) < 600, err


def test_config_file_nested_too_deeply(tmp_path, capsys):
    f = tmp_path / "deep.yaml"
    f.write_text("train: " + "[" * 20_000 + "]" * 20_000 + "\n")
    assert_clean(*run_cli(capsys, "train", "--config", str(f)), "nested too deeply")


# ---------------------------------------------------------------- issue 28: runs, resume and --overwrite


@pytest.fixture
def run_copy(finished_run, tmp_path):
    import shutil

    shutil.copytree(finished_run, tmp_path / "run")
    return tmp_path / "run"


@pytest.mark.parametrize(
    "damage, needle",
    [
        (b"model:\n  name: [unclosed\n", "not valid YAML"),
        (b"train:\n  seed: \xff\xfe\x00\n", "not UTF-8"),
        (b"", "is empty"),  # cut short by a full disk: never a run of the defaults
        (b"- 1\n", "holds list"),
    ],
)
def test_resume_with_a_damaged_config_yaml(run_copy, capsys, damage, needle):
    (run_copy / "config.yaml").write_bytes(damage)
    code, err = run_cli(capsys, "train", "--resume", str(run_copy), "--no-progress")
    assert_clean(code, err, needle, str(run_copy / "config.yaml"))
    assert (run_copy / "config.yaml").read_bytes() == damage  # left for the user to fix


@pytest.mark.parametrize("how", ["--output-dir", "train.output_dir="])
def test_resume_elsewhere_is_refused(run_copy, tmp_path, capsys, how):
    other = tmp_path / "elsewhere"
    where = ["--output-dir", str(other)] if how == "--output-dir" else [f"train.output_dir={other}"]
    code, err = run_cli(capsys, "train", "--resume", str(run_copy), *where, "--no-progress")
    assert_clean(code, err, "--resume continues", str(run_copy))
    assert not other.exists()


def test_resume_with_its_own_output_dir_is_fine(run_copy, capsys):
    code, err = run_cli(
        capsys, "train", "--resume", str(run_copy), "--output-dir", str(run_copy), "--no-progress"
    )
    assert code == 0, err


@pytest.mark.parametrize("what", ["dataset", "config"])
def test_overwrite_that_would_move_the_inputs_aside_is_refused(tmp_path, capsys, embedded_model_dir, what):
    d = tmp_path / "d"
    d.mkdir()
    data = d / "train.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{i}+1", "answer": str(i + 1)}) + "\n" for i in range(40)))
    config = d / "run.yaml"
    config.write_text(f"model:\n  name: {embedded_model_dir}\ndata:\n  dataset: {data}\n")
    given = ["--dataset", str(data), "--model", str(embedded_model_dir)]
    given = given if what == "dataset" else ["--config", str(config)]
    before = sorted(p.name for p in d.iterdir())
    code, err = run_cli(capsys, "train", *given, "--output-dir", str(d), "--overwrite", "--no-progress")
    assert_clean(code, err, "--overwrite would move", str(data if what == "dataset" else config))
    assert sorted(p.name for p in d.iterdir()) == before  # nothing moved, no lock file left
    assert [p.name for p in tmp_path.iterdir()] == ["d"]  # no d.old-DATE
