"""Plain dataclass configs <-> argparse options <-> YAML/JSON files.

Every config is a dataclass whose fields carry ``metadata={"help": ...}``; the CLI builds its
options from them (so ``--help`` documents every knob) and the resolved config is written to
``config.yaml`` of each run. No framework magic: one function each way.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, shorten


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


MAX_CONFIG_BYTES = 1 << 20  # a config is a page of options; anything larger is not one


class _NoAliasLoader(yaml.SafeLoader):
    """safe_load without anchors/aliases: a few lines of aliases can expand to gigabytes
    once the values are copied (the "billion laughs")."""

    def compose_node(self, parent, index):  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            raise ConfigError(f"{self.name}: uses YAML aliases (*name), which localdisc does not accept in configs")
        return super().compose_node(parent, index)


def read_limited_text(path: Path, limit: int = MAX_CONFIG_BYTES, what: str = "config file") -> str:
    """A small text file a user hands in: a regular file (never a FIFO or device, which could
    hang), at most ``limit`` bytes, UTF-8."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {what} not found" if not path.exists() else f"{path}: not a regular file")
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read {what} ({e.strerror})") from None
    if len(data) > limit:
        raise ConfigError(f"{path}: {what} larger than {limit // 1024} KiB; not a localdisc config")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: {what} is not UTF-8 text") from None


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON config (never pickle; bounded size, no YAML aliases)."""
    path = Path(path)
    text = read_limited_text(path)
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            loader = _NoAliasLoader(text)
            loader.name = str(path)
            try:
                data = loader.get_single_data()
            finally:
                loader.dispose()
    except (yaml.YAMLError, json.JSONDecodeError, RecursionError) as e:
        raise ConfigError(f"{path}: not valid YAML/JSON ({str(e).strip().splitlines()[0][:100]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option names to values, got {type(data).__name__}")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def resume_base(args: argparse.Namespace, config_file: str | None) -> str | None:
    """``--resume`` without ``--config``: the run's own config.yaml is the base, so a resumed run
    keeps its options; options given on the command line must agree with it (checked by the run)."""
    if config_file or not vars(args).get("resume") or not vars(args).get("out"):
        return config_file
    saved = Path(vars(args)["out"]) / "config.yaml"
    return str(saved) if saved.is_file() else None


# Sections a run's config.yaml holds beside the options themselves (see runtime.run.Run.save_config);
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
        raise ConfigError(f"{flag}: {shorten(repr(v), 60)} is not a valid {getattr(tp, '__name__', str(tp))} value") from None
    lengths, choices = f.metadata.get("lengths"), _choices(f)
    if lengths and len(v) not in lengths:
        n = " or ".join(str(k) for k in lengths if k)
        none = " (or none, for the automatic default)" if 0 in lengths else ""
        raise ConfigError(f"{flag} takes {n} numbers{none}, got {len(v)}: {show_default(v) or 'none'}")
    if choices and v not in choices:
        raise ConfigError(f"{flag}: invalid choice {shorten(repr(v), 60)}; valid: {', '.join(map(str, choices))}")
    _check_range(f, flag, v)
    return v


# Numeric rules every option follows (one place, checked before any folder exists): values are
# finite; nothing is negative except an automatic sentinel that is the option's default (-1);
# the names below need more.
POSITIVE = {"lr", "steps", "batch_size", "ae_lr", "ae_batch_size", "feature_batch_size", "sw_batch_size", "proj_hidden", "proj_dim",
            "dense_dim", "dense_hidden", "grid", "num_pseudo_classes", "embed_dim", "num_clusters", "log_every", "checkpoint_every"}
POSITIVE_ITEMS = {"image_size", "patch_size", "crop_size", "spacing", "encoder_channels", "decoder_channels", "ae_channels"}
UNIT_INTERVAL_SUFFIXES = ("_prob", "_fraction")
FRACTION_OR_COUNT = {"val_fraction"}  # below 1 a fraction, from 1 a number of images
MAX_INT = 2**31 - 1
FLOAT32_MAX = 3.0e38


def _check_range(f: dataclasses.Field, flag: str, v: Any) -> None:
    items = list(v) if isinstance(v, (list, tuple)) else [v]
    numbers = [x for x in items if isinstance(x, (int, float)) and not isinstance(x, bool)]
    for x in numbers:
        if isinstance(x, float) and not math.isfinite(x):
            raise ConfigError(f"{flag}: {x} is not a finite number")
        if isinstance(x, float) and abs(x) > FLOAT32_MAX:
            raise ConfigError(f"{flag}: {shorten(repr(x), 60)} is out of range (the network computes in float32)")
        if isinstance(x, int) and abs(x) > MAX_INT:
            raise ConfigError(f"{flag}: {shorten(repr(x), 60)} is out of range (at most {MAX_INT})")
    if not numbers:
        return
    default = f.default if f.default is not dataclasses.MISSING else None
    sentinel = isinstance(default, (int, float)) and not isinstance(default, bool) and default < 0
    if sentinel and numbers == [default]:
        return
    if f.name in POSITIVE_ITEMS and any(x <= 0 for x in numbers):
        raise ConfigError(f"{flag}: every value must be > 0, got {show_default(v)}")
    if f.name in POSITIVE and any(x <= 0 for x in numbers):
        raise ConfigError(f"{flag} must be > 0, got {shorten(repr(v), 60)}")
    if any(x < 0 for x in numbers):
        hint = f" (or {default} for the automatic value)" if sentinel else ""
        raise ConfigError(f"{flag} must be >= 0{hint}, got {shorten(repr(v), 60)}")
    if f.name.endswith(UNIT_INTERVAL_SUFFIXES) and f.name not in FRACTION_OR_COUNT and any(x > 1 for x in numbers):
        raise ConfigError(f"{flag} must be between 0 and 1, got {shorten(repr(v), 60)}")


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
        raise ConfigError(f"unknown option(s) for {cls.__name__}: {', '.join(u[:40] for u in unknown[:5])}; valid: {', '.join(sorted(fields))}")
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
