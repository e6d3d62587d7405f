"""A config from YAML and command-line overrides: `load_config(path, ["gcpo.num_generations=4"])`.

A YAML file mirrors the sections (`gcpo: {num_generations: 8}`); the command line adds `section.key=value`
overrides on top. Every key is checked: an unknown one fails with the valid keys of its section, an
out-of-range value fails with how to fix it.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from gcpo_lite.config.renames import current_name, with_current_names
from gcpo_lite.config.schema import Config
from gcpo_lite.config.sections import SECTIONS, TrainConfig
from gcpo_lite.config.validation import check_range, field_types, shown
from gcpo_lite.errors import ConfigError


def _unknown_key(where: str, key: Any, valid: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, valid, n=1) if isinstance(key, str) else []
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown config key {where}{key!r}.{hint} Valid keys: {', '.join(sorted(valid))}")


def _converted(value: Any, base: type) -> Any:
    """value as `base` (bool, int, float, str or list); TypeError or ValueError when it is not one."""
    if base is bool:
        if isinstance(value, bool):
            return value
        raise TypeError
    if base is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise TypeError
        return int(value)
    if base is float:
        if isinstance(value, bool):
            raise TypeError
        if isinstance(value, int) and abs(value) > 2**1023:  # float() would raise OverflowError
            return math.inf if value > 0 else -math.inf  # refused as not finite by the range check
        return float(value)
    if base is str:
        if isinstance(value, (list, dict)):  # `output_dir: [a]` or an unquoted `a: b` would become "['a']"
            raise TypeError
        return str(value)
    if base is list or typing.get_origin(base) is list:
        if isinstance(value, (list, tuple)):
            return list(value)
        raise TypeError
    return value


def _coerce(value: Any, typ: Any, name: str) -> Any:
    """Turn a YAML / command-line value into the field's type, or fail saying what was expected."""
    origin = typing.get_origin(typ)
    args = [a for a in typing.get_args(typ) if a is not type(None)]
    optional = origin is typing.Union and type(None) in typing.get_args(typ)
    if optional and (value is None or (isinstance(value, str) and value.lower() in ("null", "none", "~"))):
        return None
    base = args[0] if optional else typ
    if typing.get_origin(base) is Literal:  # a choice: a string here, checked against the choices in validate
        base = str
    if isinstance(value, str) and base is not str:
        try:
            value = yaml.safe_load(value) if value.strip() else value
        except (yaml.YAMLError, RecursionError):
            pass  # not YAML: kept as the string, which the checks below refuse with the field's type
    try:
        return _converted(value, base)
    except (TypeError, ValueError):
        pass
    tname = getattr(base, "__name__", str(base))
    hint = (
        f"; quote it: {name}: 'a: b' in a file, {name}=\"'a: b'\" on the command line" if base is str else ""
    )
    raise ConfigError(f"{name}={shown(value)} should be {_a(tname)}{' or null' if optional else ''}{hint}")


def _expand_auto_group_size(data: dict) -> dict:
    """`gcpo.num_generations: auto` = memory.auto_num_generations, with a valid G until the planner picks.

    The stand-in is the largest G in memory.min/max_num_generations that divides train.batch_size."""
    gcpo = data.get("gcpo") if isinstance(data.get("gcpo"), dict) else None
    if not gcpo or str(gcpo.get("num_generations")).lower() != "auto":
        return data
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    sched = data.setdefault("memory", {}) or {}
    data["memory"] = sched
    sched["auto_num_generations"] = True
    train = data.get("train") if isinstance(data.get("train"), dict) else {}
    raw = {
        "memory.min_num_generations": sched.get("min_num_generations", 2),
        "memory.max_num_generations": sched.get("max_num_generations", 16),
        "train.batch_size": train.get("batch_size", TrainConfig.batch_size),
    }
    for key, value in raw.items():  # before the search below loops over them
        raw[key] = _coerce(value, int, key)
        check_range(key, raw[key])
    lo, hi, batch = raw.values()
    fits = [g for g in range(lo, min(hi, batch) + 1) if batch % g == 0]
    if not fits:
        raise ConfigError(
            f"gcpo.num_generations=auto: no G in [{lo}, {hi}] (memory.min/max_num_generations) "
            f"divides train.batch_size={batch}; change the batch size or the range"
        )
    data["gcpo"]["num_generations"] = max(fits)
    return data


def from_dict(data: dict | None) -> Config:
    """Build and validate a Config from a nested dict (as YAML gives it)."""
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"a config file must be a mapping of sections, got {_a(type(data).__name__)}")
    data = _expand_auto_group_size(with_current_names(data))
    sections = SECTIONS
    kwargs = {}
    for name, body in data.items():
        if name not in sections:
            raise _unknown_key("section ", name, list(sections))
        if body is None:
            continue
        if not isinstance(body, dict):
            raise ConfigError(f"section {name!r} must be a mapping of keys, got {body!r}")
        types = field_types(sections[name])
        values = {}
        for key, value in body.items():
            if key not in types:
                raise _unknown_key(f"{name}.", key, list(types))
            values[key] = _coerce(value, types[key], f"{name}.{key}")
        kwargs[name] = sections[name](**values)
    return Config(**kwargs)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `section.key=value` strings to a nested dict (values parsed as YAML)."""
    _check_shape(data)
    data = {k: dict(v or {}) for k, v in with_current_names(data or {}).items()}
    sections = SECTIONS
    for item in overrides:
        if "=" not in item:
            raise ConfigError(
                f"override {shown(item)} is not of the form section.key=value (e.g. gcpo.num_generations=4)"
            )
        dotted, raw = item.split("=", 1)
        parts = dotted.strip().split(".")
        if len(parts) != 2:
            raise ConfigError(
                f"override {dotted!r} must name section.key, e.g. train.learning_rate=1e-5; "
                f"sections: {', '.join(sections)}"
            )
        section, key = current_name(f"{parts[0]}.{parts[1]}").split(".", 1)
        if section not in sections:
            raise _unknown_key("section ", section, list(sections))
        types = field_types(sections[section])
        if key not in types:
            raise _unknown_key(f"{section}.", key, list(types))
        try:
            data.setdefault(section, {})[key] = yaml.safe_load(raw) if raw.strip() else ""
        except (yaml.YAMLError, RecursionError) as e:
            why = str(getattr(e, "problem", None) or e).splitlines()[0]
            raise ConfigError(
                f"override {shown(item)}: the value is not valid YAML ({why}); close brackets and quotes, "
                f"e.g. lora.target_modules=[q_proj,v_proj] or data.system_prompt='a: b'"
            ) from None
    return data


def _a(noun: str) -> str:
    return f"{'an' if noun[:1] in 'aeiou' else 'a'} {noun}"


def _yaml_problem(e: yaml.YAMLError) -> str:
    """One line for a YAML error: the problem and where (PyYAML's own message spans several lines)."""
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    mark = getattr(e, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


def _check_shape(data) -> None:
    """A config is a mapping of sections, each a mapping of keys (or empty)."""
    if data is None:
        return
    if not isinstance(data, dict):
        raise ConfigError(
            f"a config must be a mapping of sections (model:, train:, ...), got "
            f"{_a(type(data).__name__)}; see configs/ for the layout"
        )
    for name, body in data.items():
        if body is not None and not isinstance(body, dict):
            raise ConfigError(
                f"config section {name!r} must be a mapping of keys, got {body!r}; write e.g. "
                f"`{name}:` followed by indented `key: value` lines"
            )


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read YAML (if any), apply dotted overrides, validate."""
    data: dict = {}
    if path is not None:
        p = Path(path)
        if p.is_dir():
            raise ConfigError(
                f"--config {str(p)!r} is a directory; pass a YAML file, e.g. configs/tiny_addition_cpu.yaml"
            )
        if not p.is_file():
            raise ConfigError(
                f"config file {str(p)!r} not found; configs ship in configs/ (e.g. configs/tiny_addition_cpu.yaml)"
            )
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(
                f"config file {str(p)!r} is not valid YAML ({_yaml_problem(e)}); fix that line, or start "
                "from one of configs/*.yaml"
            ) from None
        except RecursionError:
            raise ConfigError(
                f"config file {str(p)!r} is nested too deeply to be a config; start from one of configs/*.yaml"
            ) from None
        except UnicodeDecodeError as e:
            raise ConfigError(
                f"config file {str(p)!r} is not UTF-8 text ({e.reason}); re-save it as UTF-8"
            ) from None
        except OSError as e:
            raise ConfigError(
                f"config file {str(p)!r} cannot be read ({e.strerror or e}); check its permissions"
            ) from None
    return from_dict(apply_overrides(data, overrides or []))


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def describe_options() -> list[tuple[str, str, str]]:
    """(dotted key, default, help) for every option, from the fields' metadata.

    `gcpo-lite train --help` and the README's option table (options_markdown) are made from it."""
    rows = []
    for name, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            rows.append((f"{name}.{f.name}", repr(default), f.metadata.get("help", "")))
    return rows


def options_markdown() -> str:
    """The README's option tables, one per section (python -m gcpo_lite.config prints them)."""
    out = []
    for section in SECTIONS:
        out += [f"**{section}**", "", "| key | default | meaning |", "|---|---|---|"]
        for key, default, text in describe_options():
            if key.startswith(section + "."):
                cell = text.replace("|", "\\|")  # a literal | would split the table cell
                out.append(f"| `{key}` | `{default}` | {cell} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"
