"""Reward functions named by spec: FILE.py:NAME (relative or absolute), package.module:NAME, and the one-line
errors for each way a spec can be wrong."""

import sys

import pytest

from gcpo_lite.config import ConfigError, RewardConfig
from gcpo_lite.data.tasks import Example
from gcpo_lite.rewards.functions import load_spec, make_function
from gcpo_lite.rewards.reward_model import build_reward_model

SOURCE = """
HELPER_CONSTANT = 3

def helper():
    return 1

def shout(completions, **kwargs):
    return [float(c.isupper()) for c in completions]

class Scorer:
    def __call__(self, completions, **kwargs):
        return [2.0] * len(completions)

scorer = Scorer()
not_callable = 42
"""


@pytest.fixture(autouse=True)
def _forget_loaded_files():
    """Modules loaded from files during a test are dropped afterwards (each test writes its own)."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith(("gcpo_lite_rewards_", "tmp_reward_pkg")):
            del sys.modules[name]


def score(spec, texts=("ABC", "abc")):
    model = build_reward_model(RewardConfig(functions=[spec]), "addition")
    examples = [Example(prompt="p", answer="1") for _ in texts]
    return model, model.score_batch(list(texts), [[]] * len(texts), examples).rewards


def test_absolute_file_spec(tmp_path):
    (tmp_path / "my_rewards.py").write_text(SOURCE)
    model, rewards = score(f"{tmp_path / 'my_rewards.py'}:shout")
    assert rewards == [1.0, 0.0]
    assert model.functions[0].name == "shout"
    assert model.functions[0].spec == f"{tmp_path / 'my_rewards.py'}:shout"


def test_relative_file_spec(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "my_rewards.py").write_text(SOURCE)
    (tmp_path / "top_rewards.py").write_text(SOURCE)
    monkeypatch.chdir(tmp_path)
    assert score("sub/my_rewards.py:shout")[1] == [1.0, 0.0]
    assert score("top_rewards.py:shout")[1] == [1.0, 0.0]


def test_callable_object_in_a_file(tmp_path):
    (tmp_path / "my_rewards.py").write_text(SOURCE)
    assert score(f"{tmp_path / 'my_rewards.py'}:scorer")[1] == [2.0, 2.0]


def test_file_imports_its_own_helper_module(tmp_path):
    (tmp_path / "tmp_reward_pkg_helper.py").write_text("BONUS = 0.5\n")
    (tmp_path / "uses_helper.py").write_text(
        "from tmp_reward_pkg_helper import BONUS\n\n"
        "def bonus(completions, **kwargs):\n    return [BONUS for _ in completions]\n"
    )
    assert score(f"{tmp_path / 'uses_helper.py'}:bonus")[1] == [0.5, 0.5]
    assert str(tmp_path) not in sys.path  # the file's folder was on sys.path only while it loaded


def test_module_spec(tmp_path, monkeypatch):
    package = tmp_path / "tmp_reward_pkg_a"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "scoring.py").write_text(SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    model, rewards = score("tmp_reward_pkg_a.scoring:shout")
    assert rewards == [1.0, 0.0]
    assert model.functions[0].name == "shout"


def test_module_that_cannot_be_imported():
    with pytest.raises(ConfigError, match="cannot import 'tmp_reward_pkg_missing.scoring'") as e:
        load_spec("tmp_reward_pkg_missing.scoring:shout")
    assert "\n" not in str(e.value)


def test_missing_file(tmp_path):
    spec = f"{tmp_path / 'nowhere.py'}:shout"
    with pytest.raises(ConfigError, match="no file") as e:
        load_spec(spec)
    assert "nowhere.py" in str(e.value)


def test_missing_attribute_lists_what_the_file_defines(tmp_path):
    (tmp_path / "my_rewards.py").write_text(SOURCE)
    with pytest.raises(ConfigError) as e:
        load_spec(f"{tmp_path / 'my_rewards.py'}:shoot")
    message = str(e.value)
    assert "has no 'shoot'" in message
    for defined in ("shout", "helper", "scorer", "Scorer"):
        assert defined in message
    assert "HELPER_CONSTANT" not in message and "not_callable" not in message  # callables only


def test_not_callable(tmp_path):
    (tmp_path / "my_rewards.py").write_text(SOURCE)
    with pytest.raises(ConfigError, match="not_callable is a int, not a function"):
        load_spec(f"{tmp_path / 'my_rewards.py'}:not_callable")


def test_file_whose_import_raises(tmp_path):
    (tmp_path / "broken.py").write_text("x = 1 / 0\n\ndef fn(completions, **kwargs):\n    return []\n")
    with pytest.raises(ConfigError) as e:
        load_spec(f"{tmp_path / 'broken.py'}:fn")
    assert "raised ZeroDivisionError" in str(e.value)
    assert "broken.py" in str(e.value)
    assert str(tmp_path) not in sys.path


@pytest.mark.parametrize("spec", ["my_reward", "rewards.py:", ":fn", "mathh"])
def test_bad_spec_string(spec):
    with pytest.raises(ConfigError) as e:
        make_function(spec, "addition")
    message = str(e.value)
    assert "FILE.py:NAME" in message and "package.module:NAME" in message
    assert "last_integer" in message and "format" in message  # the built-ins it could have meant


def test_not_a_name_nor_a_callable():
    with pytest.raises(ConfigError, match="is a int"):
        make_function(3, "addition")


def test_python_spec_says_to_resume_from_python():
    with pytest.raises(ConfigError) as e:
        build_reward_model(RewardConfig(functions=["python:my_notebook_reward"]), "addition")
    message = str(e.value)
    assert "'my_notebook_reward'" in message
    assert "resume this run from Python" in message


def test_duplicate_names_get_suffixes(tmp_path):
    (tmp_path / "my_rewards.py").write_text(SOURCE)
    spec = f"{tmp_path / 'my_rewards.py'}:shout"

    def shout(completions, **kwargs):
        return [0.5] * len(completions)

    model = build_reward_model(RewardConfig(), "addition", functions=[spec, shout, "format", spec, "format"])
    assert [f.name for f in model.functions] == ["shout", "shout_2", "format", "shout_3", "format_2"]
    scores = model.score_batch(["ABC"], [[]], [Example(prompt="p", answer="1")])
    assert scores.per_function == {
        "shout": [1.0],
        "shout_2": [0.5],
        "format": [0.0],
        "shout_3": [1.0],
        "format_2": [0.0],
    }
    assert scores.rewards == [2.5]


def test_builtin_names_are_trimmed():
    assert make_function(" format ", "addition").name == "format"
    assert make_function("auto", "addition").name == "last_integer"
    assert make_function("auto", "gsm8k").name == "math"
