"""Plain dataclass configs <-> argparse options <-> YAML/JSON files.

Every config is a dataclass whose fields carry ``metadata={"help": ...}``; the CLI builds its
options from them (so ``--help`` documents every knob) and the resolved config is written to
``config.yaml`` of each run. No framework magic: one function each way.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError


def field(default: Any = dataclasses.MISSING, help: str = "", choices: tuple | None = None, lengths: tuple[int, ...] | None = None, **kw: Any) -> Any:
    """A dataclass field with CLI help text. ``choices``: the valid values (argparse and config
    files both check them); ``lengths``: valid numbers of values of a tuple option (e.g. (2, 3)
    for H W or D H W). Mutable defaults (lists, dicts) are copied."""
    meta = {"help": help, "choices": choices if callable(choices) or not choices else tuple(choices), "lengths": tuple(lengths) if lengths else None}
    if isinstance(default, (list, dict)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=meta, **kw)
    return dataclasses.field(default=default, metadata=meta, **kw)


def show_default(value: Any) -> str:
    """A default as a user types it: ``256 256`` for a tuple, ``true``/``false`` for a flag."""
    if isinstance(value, (list, tuple)):
        return " ".join(show_default(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _base_type(tp: Any) -> tuple[Any, bool]:
    """Strip Optional[...]; return (type, optional)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else str), True
    return tp, False


def _parse_bool(text: str) -> bool:
    low = str(text).lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _parse_number(text: str) -> float | int:
    value = float(text)
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, exclude: tuple[str, ...] = (), required: tuple[str, ...] = ()) -> None:
    """Add one ``--name`` option per dataclass field (underscores become dashes). Fields named
    in ``required`` are documented as required (the command checks them, since they may also
    come from a --config file) instead of showing their library default."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in exclude or f.name.startswith("_"):
            continue
        tp, _ = _base_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        help_text = f.metadata.get("help", "")
        if f.name in required:
            help_text = f"{help_text} (required)".strip()
        elif default not in ("", (), []):  # an empty default says nothing
            help_text = f"{help_text} (default: {show_default(default)})".strip()
        flag = "--" + f.name.replace("_", "-")
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
        if f.metadata.get("choices"):
            kwargs["choices"] = _choices(f)
        if typing.get_origin(tp) in (list, tuple) and (typing.get_args(tp) or (str,))[0] in (int, float):
            kwargs["metavar"] = "N"
        origin = typing.get_origin(tp)
        if tp is bool:
            kwargs.update(type=_parse_bool, nargs="?", const=True, metavar="BOOL")
        elif origin in (list, tuple):
            (inner, *_) = typing.get_args(tp) or (str,)
            inner = _parse_number if inner in (int, float) else (_parse_bool if inner is bool else inner)
            kwargs.update(type=inner, nargs="*")
        elif tp is float and f.name in ("labels",):
            kwargs.update(type=_parse_number)
        elif tp in (int, float, str):
            kwargs.update(type=tp)
        else:
            kwargs.update(type=str)
        parser.add_argument(flag, **kwargs)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON config (never pickle)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config file ({e.strerror})") from e
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not valid YAML/JSON: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option names to values")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


# Sections a run's config.yaml holds beside the options themselves (see train.run.Run.save_config);
# reading the file back with --config skips them.
SECTIONS = ("method_config", "effective")


def _convert(tp: Any, v: Any) -> Any:
    """One scalar value as type ``tp``; ValueError when it is not one (1.5 is not an int)."""
    if tp is bool:
        return v if isinstance(v, bool) else _parse_bool(v)
    if tp is int:
        if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
            raise ValueError(v)
        return int(v)
    if tp is float:
        if isinstance(v, bool):
            raise ValueError(v)
        return v if isinstance(v, int) else float(v)  # an int is a valid float; kept, since --labels 2 (a count) is not 2.0 in records
    if tp is str:
        if not isinstance(v, (str, int, float)):
            raise ValueError(v)
        return str(v)
    return v


def _choices(f: dataclasses.Field) -> tuple | None:
    """A field's valid values (``choices`` may be a callable, for registries that grow)."""
    choices = f.metadata.get("choices")
    return tuple(choices()) if callable(choices) else choices


def _check_value(f: dataclasses.Field, tp: Any, optional: bool, v: Any) -> Any:
    """``v`` converted to the field's type, or a one-line ConfigError naming the option."""
    flag = "--" + f.name.replace("_", "-")
    if v is None and optional:
        return v
    origin = typing.get_origin(tp)
    try:
        if origin in (list, tuple):
            (inner, *_) = typing.get_args(tp) or (str,)
            items = [_convert(inner, x) for x in (v if isinstance(v, (list, tuple)) else [v])]
            v = tuple(items) if origin is tuple else items
        else:
            v = _convert(tp, v)
    except (TypeError, ValueError, argparse.ArgumentTypeError):
        raise ConfigError(f"{flag}: {v!r} is not a valid {getattr(tp, '__name__', str(tp))} value") from None
    lengths, choices = f.metadata.get("lengths"), _choices(f)
    if lengths and len(v) not in lengths:
        n = " or ".join(str(k) for k in lengths if k)
        none = " (or none, for the automatic default)" if 0 in lengths else ""
        raise ConfigError(f"{flag} takes {n} numbers{none}, got {len(v)}: {show_default(v) or 'none'}")
    if choices and v not in choices:
        raise ConfigError(f"{flag}: invalid choice {v!r}; valid: {', '.join(map(str, choices))}")
    return v


def build_config(cls: type, *sources: dict[str, Any] | None):
    """Instantiate ``cls`` from merged mappings (later wins). Unknown keys, values of the wrong
    type, tuple options of the wrong length and values outside ``choices`` are one-line
    ConfigErrors naming the option."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    merged: dict[str, Any] = {}
    for src in sources:
        merged.update(src or {})
    unknown = sorted(set(merged) - set(fields))
    if unknown:
        raise ConfigError(f"unknown option(s) for {cls.__name__}: {', '.join(unknown)}; valid: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(cls)
    for k, v in list(merged.items()):
        tp, optional = _base_type(hints[k])
        merged[k] = _check_value(fields[k], tp, optional, v)
    try:
        return cls(**merged)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{cls.__name__}: {e}") from None


def config_from_args(cls: type, args: argparse.Namespace, config_file: str | None = None):
    """Config from an optional file overridden by the options given on the command line."""
    from_file = load_config_file(config_file) if config_file else {}
    from_file = {k: v for k, v in from_file.items() if k not in SECTIONS}
    names = {f.name for f in dataclasses.fields(cls)}
    from_cli = {k: v for k, v in vars(args).items() if k in names}
    return build_config(cls, from_file, from_cli)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Dataclass -> plain YAML-safe dict (tuples become lists)."""

    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, Path):
            return str(v)
        return v

    return {k: plain(v) for k, v in dataclasses.asdict(cfg).items()}
