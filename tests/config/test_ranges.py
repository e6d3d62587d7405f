"""Every numeric option is finite and in its range at load time (issue 28): NaN, +-inf, negative and huge values
are refused with one line naming the key, before anything hangs, trains on NaN or dies in a traceback mid-run."""

import typing

import pytest
from time_limit import within

from gcpo_lite.config import Config, ConfigError, load_config
from gcpo_lite.config.sections import SECTIONS
from gcpo_lite.config.validation import field_types


def _numeric_fields() -> list[tuple[str, type]]:
    """(section.key, int or float) for every int / float / Optional[int] / Optional[float] field."""
    out = []
    for section, cls in SECTIONS.items():
        for key, typ in field_types(cls).items():
            args = [a for a in typing.get_args(typ) if a is not type(None)] or [typ]
            if typing.get_origin(typ) in (None, typing.Union) and args[0] in (int, float):
                out.append((f"{section}.{key}", args[0]))
    return out


NUMERIC = _numeric_fields()
HOSTILE = {"nan": ".nan", "+inf": ".inf", "-inf": "-.inf", "negative": "-1", "huge": None}
HUGE = {int: str(2**70), float: "1e30"}
# (key, hostile kind) -> why that value is legitimately accepted. None is: every count and weight has a floor
# of 0 or more, a cap far above any real run, and a seed is a whole number in [0, 2**32) (the range every RNG,
# numpy's included, accepts; seed + rank and seed + epoch stay within torch's).
ALLOWED: dict[tuple[str, str], str] = {
    ("reward.correct_threshold", "negative"): "rewards may be negative (a penalty), and so may the threshold",
}


def test_the_walk_sees_every_numeric_field():
    keys = {k for k, _ in NUMERIC}
    assert {"train.batch_size", "train.learning_rate", "gcpo.epsilon_high", "lora.dropout"} <= keys
    assert "model.quantize" not in keys and "gcpo.suppress_tokens" not in keys  # bools and lists: not numbers


@pytest.mark.parametrize("key, typ", NUMERIC, ids=[k for k, _ in NUMERIC])
def test_every_numeric_option_refuses_nan_inf_negative_and_huge(key, typ):
    for kind, raw in HOSTILE.items():
        value = HUGE[typ] if raw is None else raw
        if (key, kind) in ALLOWED:
            load_config(None, [f"{key}={value}"])
            continue
        with pytest.raises(ConfigError) as e:
            load_config(None, [f"{key}={value}"])
        message = str(e.value)
        assert key in message and "\n" not in message, f"{key}={value}: {message}"


def test_the_range_table_covers_exactly_the_numeric_fields():
    from gcpo_lite.config.validation import RANGES

    missing, stale = {k for k, _ in NUMERIC} - set(RANGES), set(RANGES) - {k for k, _ in NUMERIC}
    assert not missing, f"give {sorted(missing)} a Range in RANGES (gcpo_lite/config/validation.py)"
    assert not stale, f"RANGES names {sorted(stale)}, which are no numeric options"
    for key, r in RANGES.items():  # each default is inside its own range
        section, name = key.split(".")
        default = getattr(getattr(Config(), section), name)
        assert default is None or r.holds(default), (key, default)


@pytest.mark.parametrize(
    "override, needle",
    [  # what the probe of issue 28 found, each with the key and the range in its message
        ("train.batch_size=4000000000", "train.batch_size=4000000000"),
        ("gcpo.epsilon_high=.nan", "gcpo.epsilon_high=nan is not a finite number"),
        ("train.learning_rate=.inf", "train.learning_rate=inf is not a finite number"),
        ("train.weight_decay=-1", "train.weight_decay=-1.0 is negative"),
        ("train.adam_beta1=2", "train.adam_beta1=2.0 is too large; it must be >= 0 and < 1"),
        ("train.adam_beta2=-1", "train.adam_beta2=-1.0 is negative"),
        ("lora.dropout=1.5", "lora.dropout=1.5 is too large; it must be >= 0 and < 1"),
        ("gcpo.beta=.nan", "gcpo.beta=nan"),
        ("gcpo.temperature=.inf", "gcpo.temperature=inf"),
        ("train.seed=1180591620717411303424", "train.seed=1180591620717411303424 is too large"),
        ("train.seed=-1", "train.seed=-1 is negative"),
        ("train.learning_rate=1" + "0" * 400, "train.learning_rate=inf is not a finite number"),
        ("data.eval_size=-1", "data.eval_size=-1 is negative"),
        ("train.max_minutes=-1", "train.max_minutes=-1.0 is negative; it must be > 0"),
        ("train.max_minutes=0", "train.max_minutes=0.0 is too small; it must be > 0"),
        ("memory.max_num_generations=1180591620717411303424", "memory.max_num_generations="),
        ("train.device=foo", "train.device='foo'"),
        ("train.device=cuda:x", "auto, cpu, cuda or cuda:N"),
        ("gcpo.suppress_tokens=[999999999]", "gcpo.suppress_tokens has 999999999"),
    ],
)
def test_the_reported_values_are_refused_in_one_line(override, needle):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_auto_group_size_with_a_huge_range_is_refused_not_looped():
    """gcpo.num_generations=auto searches [min, max] before validation: a huge max must not loop."""
    with within(5), pytest.raises(ConfigError, match="memory.max_num_generations="):
        load_config(None, ["gcpo.num_generations=auto", f"memory.max_num_generations={2**70}"])
    with within(5), pytest.raises(ConfigError, match="train.batch_size="):
        load_config(None, ["gcpo.num_generations=auto", f"train.batch_size={2**70}"])


@pytest.mark.parametrize(
    "override",
    [
        "lora.dropout=0",
        "lora.dropout=0.1",
        "train.adam_beta2=0.999",
        "train.adam_beta1=0",
        "train.weight_decay=0.1",
        "train.learning_rate=1",
        "train.max_minutes=0.5",
        "train.max_minutes=null",
        "train.seed=0",
        "train.seed=4294967295",
        "data.eval_size=0",
        "gcpo.epsilon_high=0",
        "gcpo.epsilon_low=null",
        "gcpo.top_p=1",
        "gcpo.beta=0.04",
        "train.max_grad_norm=0",
        "train.eval_temperature=0",
        "train.batch_size=1048576",
        "train.device=cuda:1",
        "train.device=cpu",
        "gcpo.suppress_tokens=[0, 151643]",
    ],
)
def test_values_inside_the_ranges_still_load(override):
    load_config(None, [override])


@pytest.mark.parametrize("target", ["lm_head", "embed_tokens"])
def test_output_head_and_embedding_targets_are_refused(target):
    """Issue 24.3: the loss reads the head's base weight, so a LoRA on it would never train."""
    with pytest.raises(ConfigError, match=f"lora.target_modules has '{target}'.*never train"):
        load_config(None, [f"lora.target_modules=[q_proj,{target}]"])
