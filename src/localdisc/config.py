"""Plain dataclass configs <-> argparse options <-> YAML/JSON files.

Every config is a dataclass whose fields carry ``metadata={"help": ...}``; the CLI builds its
options from them (so ``--help`` documents every knob) and the resolved config is written to
``config.yaml`` beside each checkpoint. No framework magic: one function each way.
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


def field(default: Any = dataclasses.MISSING, help: str = "", **kw: Any) -> Any:
    """A dataclass field with CLI help text. Mutable defaults (lists, tuples) are copied."""
    if isinstance(default, (list, dict)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata={"help": help}, **kw)
    return dataclasses.field(default=default, metadata={"help": help}, **kw)


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


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, exclude: tuple[str, ...] = ()) -> None:
    """Add one ``--name`` option per dataclass field (underscores become dashes)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in exclude or f.name.startswith("_"):
            continue
        tp, _ = _base_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        help_text = f.metadata.get("help", "")
        help_text = f"{help_text} (default: {default})" if help_text else f"(default: {default})"
        flag = "--" + f.name.replace("_", "-")
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
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


def build_config(cls: type, *sources: dict[str, Any] | None):
    """Instantiate ``cls`` from merged mappings (later wins); unknown keys are an error."""
    names = {f.name for f in dataclasses.fields(cls)}
    merged: dict[str, Any] = {}
    for src in sources:
        merged.update(src or {})
    unknown = sorted(set(merged) - names)
    if unknown:
        raise ConfigError(f"unknown option(s) for {cls.__name__}: {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
    hints = typing.get_type_hints(cls)
    for k, v in list(merged.items()):
        tp, _ = _base_type(hints[k])
        if typing.get_origin(tp) is tuple and isinstance(v, list):
            merged[k] = tuple(v)
    return cls(**merged)


def config_from_args(cls: type, args: argparse.Namespace, config_file: str | None = None):
    """Config from an optional file overridden by the options given on the command line."""
    from_file = load_config_file(config_file) if config_file else {}
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


def save_config(cfg: Any, path: str | Path, **extra: Any) -> None:
    """Write the resolved config (plus extra sections, e.g. ``method_config``) as YAML, atomically."""
    from .train.checkpoint import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump({**to_dict(cfg), **extra}, sort_keys=False))
