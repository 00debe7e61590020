"""Benchmark configuration (docs/method.md): the YAML schema, profiles, label budgets, and the
per-run configs and fingerprints that give every method the same protocol.

:func:`load_benchmark_config` reads a benchmark YAML (commented example: ``configs/synthetic.yaml``)
into a :class:`BenchmarkConfig`. :func:`pretrain_config` / :func:`finetune_config` build the run
configs of one cell; the protocol keys (data, seeds, splits, fine-tuning budget) are set by the
benchmark, never by a method entry. :func:`fingerprint` and ``_settings`` identify cached runs, so
that a cached cell made with other settings is refused instead of silently reused. The runner is
:mod:`localdisc.tasks.benchmark`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import MAX_INT, build_config, load_config_file, to_dict
from ..errors import ConfigError
from ..train.finetune import FinetuneConfig
from ..train.pretrain import PretrainConfig

# Keys the benchmark sets itself (identical for every method); a method entry may not change them.
FINETUNE_PROTOCOL = ("data", "out", "seed", "split_seed", "test_fraction", "labels", "val_fraction", "steps", "batch_size",
                     "image_size", "patch_size", "in_channels", "num_classes", "init", "resume", "overwrite", "max_minutes",
                     "encoder_channels", "decoder_channels", "norm", "device")
PRETRAIN_PROTOCOL = ("data", "out", "method", "split", "seed", "image_size", "in_channels", "resume", "overwrite", "init",
                     "encoder_channels", "decoder_channels", "norm", "device")
# Settings that do not change results: left out of the cache fingerprints.
# The guard is the finetune command's (tasks/guard.py): a cell is one fine-tuning run, and the report
# derives the guarded choice from the LD and random-init cells.
NOT_FINGERPRINTED = ("out", "resume", "overwrite", "device", "workers", "log_every", "checkpoint_every", "picture_every", "guard")
TOP_KEYS = ("name", "data", "image_size", "in_channels", "num_classes", "budgets", "seeds", "pretrain_seed", "split_seed", "val_fraction",
            "test_fraction", "encoder_channels", "decoder_channels", "norm", "pretrain", "finetune", "methods", "profiles",
            "default_profile", "max_overlays", "keep_checkpoints", "device", "out")


@dataclass
class MethodEntry:
    name: str  # label in tables and folder name
    pretrain: str | None = None  # pretraining method (METHODS key); None = random init
    method: dict[str, Any] = field(default_factory=dict)  # options of the pretraining method's Config
    pretrain_options: dict[str, Any] = field(default_factory=dict)  # PretrainConfig overrides for this method
    finetune: dict[str, Any] = field(default_factory=dict)  # fine-tuning add-ons (pdcr, uafs_stages, transfer, ...)

    @property
    def pretrain_key(self) -> str | None:
        """Folder key of the pretraining run; entries with equal settings share one run."""
        if self.pretrain is None:
            return None
        if not self.method and not self.pretrain_options:
            return self.pretrain
        return f"{self.pretrain}-{fingerprint({'method': self.method, 'options': self.pretrain_options})[:8]}"


@dataclass
class BenchmarkConfig:
    name: str
    data: str
    image_size: tuple[int, ...]
    in_channels: int = 0
    num_classes: int = 0
    budgets: list[Any] = field(default_factory=lambda: ["all"])
    seeds: list[int] = field(default_factory=lambda: [0])
    pretrain_seed: int | None = None  # one pretraining run (this seed) shared by every fine-tuning seed; None = one per seed
    split_seed: int = 0
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    encoder_channels: tuple[int, ...] | None = None
    decoder_channels: tuple[int, ...] | None = None
    norm: str | None = None
    pretrain: dict[str, Any] = field(default_factory=dict)  # common PretrainConfig options
    finetune: dict[str, Any] = field(default_factory=dict)  # common FinetuneConfig options
    methods: list[MethodEntry] = field(default_factory=list)
    max_overlays: int = 4
    keep_checkpoints: bool = False  # keep ckpt-*/ (optimizer state) of finished runs; only needed to extend them
    device: str = "auto"
    profile: str = ""
    out: str = ""


def fingerprint(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Deep merge for profiles: nested dicts merge, everything else (lists too) is replaced."""
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _budget(given: Any, where: str) -> int | float | str:
    b = given
    if isinstance(b, str) and b.strip().lower() in ("all", "full", "100%"):
        return "all"
    if isinstance(b, str):
        b = _typed(b.strip()[:-1], 0.01) if b.strip().endswith("%") else _typed(b.strip())
    if (isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b) or b <= 0
            or (isinstance(b, float) and b > 1 and not b.is_integer())):
        raise ConfigError(f"{where}: budget {given!r} must be a count of labeled images, a fraction in (0, 1), or 'all'")
    return int(b) if float(b).is_integer() and b >= 1 else float(b)


def _typed(text: str, scale: float = 1) -> int | float | str:
    """A budget typed as text: "2" -> 2, "0.25" -> 0.25, text that is no number stays text."""
    for kind in (int, float):
        try:
            return kind(text) * scale if scale != 1 else kind(text)
        except ValueError:
            pass
    return text


def checked_seed(value: Any, where: str) -> int:
    """A seed as torch and numpy take it: an integer in [0, 2^31 - 1]."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT:
        raise ConfigError(f"{where} must be an integer from 0 to {MAX_INT}, got {value!r}")
    return value


def budget_label(b: Any) -> str:
    return "all" if b == "all" else (f"{int(b)}" if isinstance(b, int) else f"{b:g}")


def _method_entry(raw: Any, where: str) -> MethodEntry:
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict) or "name" not in raw:
        raise ConfigError(f"{where}: a method entry is a name or a mapping with 'name' (got {raw!r})")
    unknown = set(raw) - {"name", "pretrain", "method", "pretrain_options", "finetune"}
    if unknown:
        raise ConfigError(f"{where}: method {raw['name']!r} has unknown keys {sorted(unknown)} (valid: name, pretrain, method, pretrain_options, finetune)")
    name = str(raw["name"])
    pre = raw.get("pretrain", None if name == "random" else name)
    pre = None if pre in (None, "", "none", "random") else str(pre)
    ft = dict(raw.get("finetune") or {})
    bad = sorted(set(ft) & set(FINETUNE_PROTOCOL))
    if bad:
        raise ConfigError(f"{where}: method {name!r} may not change {bad}: every method gets the same data, seeds, splits and fine-tuning budget")
    po = dict(raw.get("pretrain_options") or {})
    bad = sorted(set(po) & set(PRETRAIN_PROTOCOL))
    if bad:
        raise ConfigError(f"{where}: method {name!r} may not change pretraining options {bad} (set by the benchmark)")
    if pre is None and (raw.get("method") or po):
        raise ConfigError(f"{where}: method {name!r} has no pretraining but sets pretraining options")
    return MethodEntry(name, pre, dict(raw.get("method") or {}), po, ft)


def _data_relative_to(config_dir: Path, spec: str) -> str:
    """A data spec whose path is relative and exists next to the config file is taken relative
    to it (``ph2:../../shared/data/PH2`` in configs/), so a config works from any checkout; any
    other spec (absolute, relative to the working folder, built-in) is kept as written."""

    kind, sep, rest = spec.partition(":")
    path = rest if sep and len(kind) > 1 else spec  # 'C:\\...' style drive letters are not kinds
    if not path or os.path.isabs(path) or not (config_dir / path).exists():
        return spec
    resolved = os.path.normpath(os.path.abspath(config_dir / path))
    return f"{kind}:{resolved}" if path is rest else resolved


def load_benchmark_config(path: str | Path, profile: str | None = None, methods: list[str] | None = None,
                          budgets: list[str] | None = None) -> BenchmarkConfig:
    """Read a benchmark YAML. Top-level keys (see configs/synthetic.yaml for a commented example):

    name, data (spec), image_size, in_channels, num_classes, budgets (counts, fractions, 'all'),
    seeds, pretrain_seed (one pretraining run shared by all seeds), split_seed, val_fraction, test_fraction, encoder_channels/decoder_channels/norm,
    pretrain: {PretrainConfig options common to all methods}, finetune: {FinetuneConfig options},
    methods: [name | {name, pretrain, method: {...}, pretrain_options: {...}, finetune: {add-ons}}],
    profiles: {quick: {overrides}, full: {overrides}}, default_profile, max_overlays, device, out.
    ``profile`` (default: ``default_profile``) is deep-merged over the top level; ``methods``
    keeps only those entries (random init is always kept as the reference), ``budgets`` only those
    label budgets (as typed on the command line: "2", "0.25", "all").
    """

    path = Path(path)
    raw = load_config_file(path)
    profiles = raw.pop("profiles", {}) or {}
    profile = profile or raw.pop("default_profile", "") or ""
    raw.pop("default_profile", None)
    if profile:
        if profile not in profiles:
            raise ConfigError(f"{path}: no profile {profile!r} (profiles: {', '.join(profiles) or 'none'})")
        raw = _merge(raw, profiles[profile])
    unknown = sorted(set(raw) - set(TOP_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; valid: {', '.join(TOP_KEYS)}")
    for key in ("data", "image_size", "methods"):
        if key not in raw:
            raise ConfigError(f"{path}: missing required key {key!r}")
    entries = [_method_entry(m, str(path)) for m in raw["methods"]]
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: duplicate method names {sorted({n for n in names if names.count(n) > 1})}")
    if "random" in names:
        ref = entries[names.index("random")]
        if ref.pretrain is not None or ref.finetune:
            raise ConfigError(f"{path}: the method named 'random' is the plain random-init reference; name variants differently")
        entries.remove(ref)
    entries.insert(0, MethodEntry("random"))
    if methods:
        missing = sorted(set(methods) - {e.name for e in entries})
        if missing:
            raise ConfigError(f"{path}: --methods {missing} not in the config (methods: {', '.join(e.name for e in entries)})")
        entries = [e for e in entries if e.name == "random" or e.name in methods]
    for key in ("pretrain", "finetune"):
        bad = sorted(set(raw.get(key) or {}) & {"data", "out", "seed", "labels", "method", "init", "resume", "overwrite"})
        if bad:
            raise ConfigError(f"{path}: {key}: {bad} are set by the benchmark (use the top-level keys data/seeds/budgets)")
    seeds = raw.get("seeds", [0])
    seeds = [int(s) for s in (seeds if isinstance(seeds, list) else [seeds])]
    all_budgets = [_budget(b, str(path)) for b in (raw.get("budgets") or ["all"])]
    chosen = [_budget(b, f"{path}: --budgets") for b in (budgets or [])]
    missing = [budget_label(b) for b in chosen if b not in all_budgets]
    if missing:
        raise ConfigError(f"{path}: --budgets {missing} not in the profile (budgets: {', '.join(budget_label(b) for b in all_budgets)})")
    budgets = [b for b in all_budgets if not chosen or b in chosen]
    tup = lambda v: tuple(int(x) for x in v) if v is not None else None  # noqa: E731
    return BenchmarkConfig(
        name=str(raw.get("name") or path.stem), data=_data_relative_to(path.parent, str(raw["data"])), image_size=tup(raw["image_size"]),
        in_channels=int(raw.get("in_channels", 0)), num_classes=int(raw.get("num_classes", 0)), budgets=budgets, seeds=seeds,
        pretrain_seed=None if raw.get("pretrain_seed") is None else checked_seed(raw["pretrain_seed"], f"{path}: pretrain_seed"),
        split_seed=int(raw.get("split_seed", 0)), val_fraction=float(raw.get("val_fraction", 0.2)),
        test_fraction=float(raw.get("test_fraction", 0.2)), encoder_channels=tup(raw.get("encoder_channels")),
        decoder_channels=tup(raw.get("decoder_channels")), norm=raw.get("norm"), pretrain=dict(raw.get("pretrain") or {}),
        finetune=dict(raw.get("finetune") or {}), methods=entries, max_overlays=int(raw.get("max_overlays", 4)),
        keep_checkpoints=bool(raw.get("keep_checkpoints", False)),
        device=str(raw.get("device", "auto")), profile=profile, out=str(raw.get("out", "")))


def _network(cfg: BenchmarkConfig) -> dict[str, Any]:
    net = {"encoder_channels": cfg.encoder_channels, "decoder_channels": cfg.decoder_channels, "norm": cfg.norm}
    return {k: v for k, v in net.items() if v is not None}


def pretrain_config(cfg: BenchmarkConfig, entry: MethodEntry, seed: int, out: Path, data: str):
    return build_config(PretrainConfig, cfg.pretrain, entry.pretrain_options, _network(cfg), {
        "data": data, "out": str(out), "method": entry.pretrain, "split": "train", "seed": seed,
        "image_size": cfg.image_size, "in_channels": cfg.in_channels, "device": cfg.device})


def finetune_config(cfg: BenchmarkConfig, entry: MethodEntry, budget: Any, seed: int, out: Path, init: Path | None):
    return build_config(FinetuneConfig, cfg.finetune, entry.finetune, _network(cfg), {
        "data": cfg.data, "out": str(out), "seed": seed, "split_seed": cfg.split_seed, "test_fraction": cfg.test_fraction,
        "val_fraction": cfg.val_fraction, "labels": 0 if budget == "all" else budget, "image_size": cfg.image_size,
        "in_channels": cfg.in_channels, "num_classes": cfg.num_classes, "init": str(init) if init else "", "device": cfg.device})


def effective_settings(d: dict[str, Any]) -> dict[str, Any]:
    """``d`` without the options that cannot change the result (those of a switched-off add-on),
    and with the automatic (-1) transfer protocol of older runs as what it meant without --init
    (plain training: no frozen encoder, one learning rate), so their cells stay reusable."""
    if d.get("pdcr") is False:
        d = {k: v for k, v in d.items() if not k.startswith("pdcr_")}
    if not d.get("init") and (d.get("freeze_encoder_steps") == -1 or d.get("encoder_lr_scale") == -1):
        d = {**d, "freeze_encoder_steps": 0 if d.get("freeze_encoder_steps") == -1 else d.get("freeze_encoder_steps"),
             "encoder_lr_scale": 1.0 if d.get("encoder_lr_scale") == -1 else d.get("encoder_lr_scale")}
    return d


def _settings(run_cfg: Any, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The settings that identify a cached run, plus ``_defaults`` (the config class's defaults,
    never recorded) so that an option added later counts as its default for older runs."""
    plain = lambda cfg: effective_settings({k: v for k, v in to_dict(cfg).items() if k not in NOT_FINGERPRINTED})  # noqa: E731
    d = plain(run_cfg)
    if "init" in d:  # the pretraining run is identified by its own fingerprint, not by its path
        d["init"] = Path(d["init"]).name if d["init"] else ""
    return {**d, **(extra or {}), "_defaults": plain(type(run_cfg)())}


def _plain(cfg: BenchmarkConfig) -> dict[str, Any]:
    """The config as plain YAML-able data (written to OUT/benchmark.yaml)."""
    d = {k: getattr(cfg, k) for k in cfg.__dataclass_fields__ if k != "methods"}
    d = json.loads(json.dumps(d, default=list))
    d["methods"] = [{"name": m.name, "pretrain": m.pretrain, "method": m.method, "pretrain_options": m.pretrain_options,
                     "finetune": m.finetune} for m in cfg.methods]
    return d


__all__ = ["BenchmarkConfig", "MethodEntry", "load_benchmark_config", "pretrain_config", "finetune_config", "budget_label",
           "fingerprint", "FINETUNE_PROTOCOL", "PRETRAIN_PROTOCOL", "NOT_FINGERPRINTED", "TOP_KEYS"]
