"""Each dataset preset's completion length (data/presets.py): what a run on it gets unless
gcpo.max_completion_length is set, so that step-by-step answers are not all cut off and scored 0."""

import dataclasses

import pytest

from gcpo_lite.config import GCPOSection
from gcpo_lite.data.presets import PRESETS, completion_length_default, preset_length

CHOSEN = {"gsm8k": 512, "math": 1024, "math500": 1024, "aime24": 3072, "aime25": 3072, "openr1": 3072}


def test_every_preset_has_a_length_and_a_reason():
    assert set(CHOSEN) == set(PRESETS)
    for name, preset in PRESETS.items():
        assert preset.max_completion_length == CHOSEN[name]
        assert preset.length_note and "\n" not in preset.length_note
        # with a data.max_prompt_length=512 prompt it fits Qwen2.5-Math's 4096 positions
        assert 256 < preset.max_completion_length <= 4096 - 512


@pytest.mark.parametrize(
    "name, expected",
    [
        ("gsm8k", ("gsm8k", 512)),
        ("openai/gsm8k", ("gsm8k", 512)),  # the preset's own hub id
        ("MATH", ("math", 1024)),
        ("math-500", ("math500", 1024)),  # an alias
        ("aime_2025", ("aime25", 3072)),
        ("open-r1/OpenR1-Math-220k", ("openr1", 3072)),
    ],
)
def test_names_aliases_and_hub_ids_find_the_length(name, expected):
    found = preset_length(name)
    assert (found.preset, found.tokens) == expected and found.reason
    assert completion_length_default(name) == expected[1]


@pytest.mark.parametrize("name", [None, "", "addition", "someone/their-math-set", "x" * 5000])
def test_no_preset_no_length(name):
    assert preset_length(name) is None and completion_length_default(name) is None


def test_a_local_directory_named_like_a_preset_has_none(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "math").mkdir()
    assert completion_length_default("math") is None
    assert completion_length_default("gsm8k") == 512


def test_the_generic_default_stays_and_its_help_tells_of_the_presets():
    """256 stays for the built-in tasks, files and other hub ids; the option's help says a preset has its own."""
    option = next(f for f in dataclasses.fields(GCPOSection) if f.name == "max_completion_length")
    assert option.default == 256 and "preset" in option.metadata["help"]
