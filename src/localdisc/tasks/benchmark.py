"""Transfer benchmark (SPEC sections 7 and 8): methods x label budgets x seeds, honestly.

``run_benchmark(cfg, out)`` runs, for every seed:
  1. pretraining once per (pretraining method, seed) on the TRAIN split images only, cached in
     ``OUT/pretrain/<key>-s<seed>/`` and reused by every method entry that shares it;
  2. fine-tuning per (method, budget, seed) in ``OUT/finetune/<method>/b<budget>-s<seed>/``
     with the same seed, split (``split_seed``), validation carve and fine-tuning budget
     (steps, batch size, image size) for every method; random init is always the reference;
  3. evaluation of the validation-selected checkpoint on the test split (per-image CSV).
A cell is finished when its ``summary.json`` exists (written atomically, last); a stopped
benchmark resumes its unfinished pretraining/fine-tuning runs from their checkpoints and never
redoes finished cells. A cached cell made with other settings is an error, not silently reused.

Then ``write_outputs`` collects results.csv, per_image.csv, comparisons.csv (paired tests vs
random init), results.md, dice_vs_labels.png and report.html (see :mod:`localdisc.report`).
The config format is documented in ``configs/synthetic.yaml`` and :func:`load_benchmark_config`.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from ..config import build_config, to_dict
from ..errors import ConfigError

# Keys the benchmark sets itself (identical for every method); a method entry may not change them.
FINETUNE_PROTOCOL = ("data", "out", "seed", "split_seed", "test_fraction", "labels", "val_fraction", "steps", "batch_size",
                     "image_size", "patch_size", "in_channels", "num_classes", "init", "resume", "overwrite", "max_minutes",
                     "encoder_channels", "decoder_channels", "norm", "device")
PRETRAIN_PROTOCOL = ("data", "out", "method", "split", "seed", "image_size", "in_channels", "resume", "overwrite", "init",
                     "encoder_channels", "decoder_channels", "norm", "device")
# Settings that do not change results: left out of the cache fingerprints.
NOT_FINGERPRINTED = ("out", "resume", "overwrite", "device", "workers", "log_every", "checkpoint_every", "picture_every")
TOP_KEYS = ("name", "data", "image_size", "in_channels", "num_classes", "budgets", "seeds", "split_seed", "val_fraction",
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


# ---------------------------------------------------------------- config


def fingerprint(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Deep merge for profiles: nested dicts merge, everything else (lists too) is replaced."""
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _budget(b: Any, where: str) -> int | float | str:
    if isinstance(b, str) and b.strip().lower() in ("all", "full", "100%"):
        return "all"
    if isinstance(b, str) and b.strip().endswith("%"):
        b = float(b.strip()[:-1]) / 100
    if isinstance(b, bool) or not isinstance(b, (int, float)) or b <= 0 or (isinstance(b, float) and b > 1 and not b.is_integer()):
        raise ConfigError(f"{where}: budget {b!r} must be a count of labeled images, a fraction in (0, 1), or 'all'")
    return int(b) if float(b).is_integer() and b >= 1 else float(b)


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


def load_benchmark_config(path: str | Path, profile: str | None = None, methods: list[str] | None = None) -> BenchmarkConfig:
    """Read a benchmark YAML. Top-level keys (see configs/synthetic.yaml for a commented example):

    name, data (spec), image_size, in_channels, num_classes, budgets (counts, fractions, 'all'),
    seeds, split_seed, val_fraction, test_fraction, encoder_channels/decoder_channels/norm,
    pretrain: {PretrainConfig options common to all methods}, finetune: {FinetuneConfig options},
    methods: [name | {name, pretrain, method: {...}, pretrain_options: {...}, finetune: {add-ons}}],
    profiles: {quick: {overrides}, full: {overrides}}, default_profile, max_overlays, device, out.
    ``profile`` (default: ``default_profile``) is deep-merged over the top level; ``methods``
    keeps only those entries (random init is always kept as the reference).
    """
    from ..config import load_config_file

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
    budgets = [_budget(b, str(path)) for b in (raw.get("budgets") or ["all"])]
    tup = lambda v: tuple(int(x) for x in v) if v is not None else None  # noqa: E731
    return BenchmarkConfig(
        name=str(raw.get("name") or path.stem), data=str(raw["data"]), image_size=tup(raw["image_size"]),
        in_channels=int(raw.get("in_channels", 0)), num_classes=int(raw.get("num_classes", 0)), budgets=budgets, seeds=seeds,
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
    from ..train.pretrain import PretrainConfig

    return build_config(PretrainConfig, cfg.pretrain, entry.pretrain_options, _network(cfg), {
        "data": data, "out": str(out), "method": entry.pretrain, "split": "train", "seed": seed,
        "image_size": cfg.image_size, "in_channels": cfg.in_channels, "device": cfg.device})


def finetune_config(cfg: BenchmarkConfig, entry: MethodEntry, budget: Any, seed: int, out: Path, init: Path | None):
    from ..train.finetune import FinetuneConfig

    return build_config(FinetuneConfig, cfg.finetune, entry.finetune, _network(cfg), {
        "data": cfg.data, "out": str(out), "seed": seed, "split_seed": cfg.split_seed, "test_fraction": cfg.test_fraction,
        "val_fraction": cfg.val_fraction, "labels": 0 if budget == "all" else budget, "image_size": cfg.image_size,
        "in_channels": cfg.in_channels, "num_classes": cfg.num_classes, "init": str(init) if init else "", "device": cfg.device})


def _settings(run_cfg: Any, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    d = {k: v for k, v in to_dict(run_cfg).items() if k not in NOT_FINGERPRINTED}
    if "init" in d:  # the pretraining run is identified by its own fingerprint, not by its path
        d["init"] = Path(d["init"]).name if d["init"] else ""
    return {**d, **(extra or {})}


# ---------------------------------------------------------------- plan


@dataclass
class Cell:
    method: MethodEntry
    budget: Any
    seed: int
    path: Path
    pretrain_dir: Path | None

    @property
    def done(self) -> bool:
        return (self.path / "summary.json").is_file()


def plan(cfg: BenchmarkConfig, out: Path) -> list[Cell]:
    cells = []
    for seed in cfg.seeds:
        for entry in cfg.methods:
            pre = out / "pretrain" / f"{entry.pretrain_key}-s{seed}" if entry.pretrain else None
            for b in cfg.budgets:
                cells.append(Cell(entry, b, seed, out / "finetune" / entry.name / f"b{budget_label(b)}-s{seed}", pre))
    return cells


def _pretrain_data(cfg: BenchmarkConfig, out: Path, write: bool = True) -> str:
    """The data spec pretraining reads. When every sample has a split, the spec itself with
    split=train; otherwise a manifest of exactly the images fine-tuning will treat as train
    (so unassigned images that become test are never seen during pretraining)."""
    from ..data.sources import resolve_source
    from ..train.finetune import assigned_splits

    samples = resolve_source(cfg.data, seed=cfg.split_seed)
    if all(s.split is not None for s in samples):
        return cfg.data
    train = [s for s in assigned_splits(samples, cfg.split_seed, cfg.test_fraction) if s.split == "train"]
    path = out / "pretrain" / "train_images.csv"
    if write:
        from ..train.checkpoint import atomic_write_text

        lines = ["id,image,split"] + [f"{s.id},{Path(s.image).resolve()},train" for s in train]
        atomic_write_text(path, "\n".join(lines) + "\n")
    return str(path)


def _check_marker(marker: Path, settings: dict[str, Any]) -> None:
    saved = json.loads(marker.read_text()).get("settings", {})
    if fingerprint(saved) != fingerprint(settings):
        diff = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
        raise ConfigError(f"{marker.parent}: cached run was made with other settings ({', '.join(diff)}); "
                          "use another --out or delete that folder to recompute it")


def _prune_checkpoints(run_dir: Path) -> None:
    """Drop the resume checkpoints (weights + optimizer state) of a FINISHED run; the final and
    best weights stay. Saves ~2/3 of the disk space of a benchmark."""
    import shutil

    for ckpt in sorted(run_dir.glob("**/ckpt-*")):
        if ckpt.is_dir() and ckpt.name[5:].isdigit():
            shutil.rmtree(ckpt)
    for pointer in run_dir.glob("**/latest.json"):
        pointer.unlink()


def _claim(run_dir: Path, settings: dict[str, Any]) -> None:
    """Record the settings before training, so that resuming a stopped run with changed
    settings is refused instead of mixing two configurations in one run."""
    from ..train.checkpoint import atomic_write_text

    started = run_dir / "benchmark_settings.json"
    if started.is_file():
        _check_marker(started, settings)
    else:
        atomic_write_text(started, json.dumps({"settings": settings}, indent=2, default=str))


# ---------------------------------------------------------------- run


@dataclass
class BenchmarkResult:
    out: Path
    cells: list[Cell]
    pretrained: list[str] = field(default_factory=list)  # runs trained (or resumed) in this call
    finetuned: list[str] = field(default_factory=list)
    evaluated: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)  # finished cells and pretraining runs reused


def ensure_pretrained(cfg: BenchmarkConfig, entry: MethodEntry, seed: int, run_dir: Path, data: str, result: BenchmarkResult) -> Path:
    from ..methods import get_method
    from ..train.checkpoint import atomic_write_text

    method_cls = get_method(entry.pretrain)
    mcfg = build_config(method_cls.Config, entry.method)
    pcfg = pretrain_config(cfg, entry, seed, run_dir, data)
    settings = _settings(pcfg, {"method_config": to_dict(mcfg)})
    settings["data"] = cfg.data  # the manifest path (if any) depends on --out
    marker = run_dir / "pretrain_done.json"
    if marker.is_file():
        _check_marker(marker, settings)
        if str(run_dir) not in result.pretrained + result.reused:
            result.reused.append(str(run_dir))
        return run_dir
    _claim(run_dir, settings)
    pcfg = replace(pcfg, resume=True)  # an interrupted run continues from its checkpoint
    print(f"pretraining {entry.pretrain} (seed {seed}) -> {run_dir}", flush=True)
    t0 = time.time()
    method_cls.run_schedule(pcfg, mcfg)
    atomic_write_text(marker, json.dumps({"settings": settings, "seconds": round(time.time() - t0, 1)}, indent=2, default=str))
    if not cfg.keep_checkpoints:
        _prune_checkpoints(run_dir)
    result.pretrained.append(str(run_dir))
    return run_dir


def run_cell(cfg: BenchmarkConfig, cell: Cell, result: BenchmarkResult) -> dict[str, Any]:
    from ..train.checkpoint import atomic_write_text
    from ..train.finetune import finetune
    from .evaluate import evaluate

    fcfg = finetune_config(cfg, cell.method, cell.budget, cell.seed, cell.path, cell.pretrain_dir)
    settings = _settings(fcfg, {"method": cell.method.name, "budget": budget_label(cell.budget)})
    marker = cell.path / "summary.json"
    if marker.is_file():
        _check_marker(marker, settings)
        result.reused.append(str(cell.path))
        return json.loads(marker.read_text())
    t0 = time.time()
    _claim(cell.path, settings)
    if not (cell.path / "model.json").is_file():  # model.json is written last by finetune
        finetune(replace(fcfg, resume=(cell.path / "config.yaml").is_file()))
        result.finetuned.append(str(cell.path))
    t1 = time.time()
    summary = evaluate(cell.path, split="test", out=cell.path / "eval-test", checkpoint="best", device=cfg.device,
                       overlays=cfg.max_overlays > 0, max_overlays=cfg.max_overlays, save_predictions=False)
    result.evaluated.append(str(cell.path))
    info = json.loads((cell.path / "model.json").read_text())
    record = {"method": cell.method.name, "budget": budget_label(cell.budget), "seed": cell.seed,
              "n_labels": info.get("n_train"), "n_val": info.get("n_val"), "n_test": summary["n_images"],
              "init": str(cell.pretrain_dir or ""), "task": info.get("task"), "class_names": summary["class_names"],
              "best_step": info.get("best_step"), "train_seconds": round(t1 - t0, 1), "eval_seconds": round(time.time() - t1, 1),
              "metrics": summary["metrics"], "settings": settings}
    atomic_write_text(marker, json.dumps(record, indent=2, default=str))  # last: marks the cell finished
    if not cfg.keep_checkpoints:
        _prune_checkpoints(cell.path)
    return record


def run_benchmark(cfg: BenchmarkConfig, out: str | Path, report_only: bool = False) -> BenchmarkResult:
    """Run (or resume) every cell, then write the outputs. ``report_only``: only the outputs,
    from the cells finished so far."""
    from ..methods import METHODS
    from ..train.checkpoint import atomic_write_text

    out = Path(out)
    cells = plan(cfg, out)
    result = BenchmarkResult(out, cells)
    missing = sorted({c.method.pretrain for c in cells if c.method.pretrain and c.method.pretrain not in METHODS})
    if missing and not report_only:
        raise ConfigError(f"pretraining method(s) {missing} are not available; valid: {', '.join(sorted(METHODS))} (or drop them with --methods)")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "benchmark.yaml", yaml.safe_dump(_plain(cfg), sort_keys=False))
    started = time.time()
    if not report_only:
        data = _pretrain_data(cfg, out) if any(c.pretrain_dir for c in cells) else cfg.data
        for i, cell in enumerate(cells, start=1):
            tag = f"[{i}/{len(cells)}] {cell.method.name} budget {budget_label(cell.budget)} seed {cell.seed}"
            if cell.done:
                run_cell(cfg, cell, result)  # checks the settings, counts it as reused
                print(f"{tag}: finished earlier", flush=True)
                continue
            if cell.pretrain_dir is not None:
                ensure_pretrained(cfg, cell.method, cell.seed, cell.pretrain_dir, data, result)
            rec = run_cell(cfg, cell, result)
            print(f"{tag}: test Dice {rec['metrics']['dice_mean']['mean']:.3f} ({rec['train_seconds']:.0f} s train, {rec['eval_seconds']:.0f} s eval)", flush=True)
    write_outputs(cfg, out, [c for c in cells if c.done], wall_seconds=time.time() - started)
    return result


# ---------------------------------------------------------------- outputs


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def collect(cells: list[Cell]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(cell records from summary.json, per-image rows tagged with method/budget/seed/n_labels)."""
    records, per_image = [], []
    for c in cells:
        rec = json.loads((c.path / "summary.json").read_text())
        records.append(rec)
        with open(c.path / "eval-test" / "per_image.csv", newline="") as f:
            for row in csv.DictReader(f):
                per_image.append({"method": rec["method"], "budget": rec["budget"], "seed": rec["seed"], "n_labels": rec["n_labels"], **row})
    return records, per_image


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    import io

    from ..train.checkpoint import atomic_write_text

    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys or ["method"])
    w.writeheader()
    w.writerows([{k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows])
    atomic_write_text(path, buf.getvalue())


def result_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """results.csv: one row per method/budget/seed/class (test means; 'mean' = over classes)."""
    rows = []
    for rec in records:
        m, fg = rec["metrics"], rec["class_names"][1:]
        vessel = "auc" in m
        for cls in fg + (["mean"] if len(fg) > 1 else []):
            names = fg if cls == "mean" else [cls]
            get = lambda k: sum(_float(m.get(f"{k}_{n}", {}).get("mean")) for n in names) / len(names)  # noqa: E731
            row = {"method": rec["method"], "budget": rec["budget"], "seed": rec["seed"], "n_labels": rec["n_labels"],
                   "class": cls, "n_test": rec["n_test"], "dice": get("dice"), "iou": get("iou"), "hd95": get("hd95")}
            if vessel:
                row.update(auc=_float(m["auc"]["mean"]), acc=_float(m.get("accuracy", {}).get("mean")))
            rows.append(row)
    return rows


def aggregate(per_image: list[dict[str, Any]], column: str) -> dict[tuple[str, str], tuple[float, float, int]]:
    """(method, budget) -> (mean, std, n) of a per-image column, pooled over images and seeds."""
    import numpy as np

    groups: dict[tuple[str, str], list[float]] = {}
    for r in per_image:
        groups.setdefault((str(r["method"]), str(r["budget"])), []).append(_float(r.get(column)))
    out = {}
    for k, vals in groups.items():
        v = np.asarray(vals, dtype=np.float64)
        v = v[np.isfinite(v)]
        out[k] = (float(v.mean()), float(v.std()), int(v.size)) if v.size else (float("nan"), float("nan"), 0)
    return out


def write_outputs(cfg: BenchmarkConfig, out: Path, cells: list[Cell], wall_seconds: float | None = None) -> dict[str, Path]:
    """results.csv, per_image.csv, comparisons.csv, results.md, dice_vs_labels.png, report.html."""
    from ..report.html import write_html_report
    from ..report.plots import dice_vs_labels
    from ..report.provenance import provenance, provenance_markdown
    from ..report.tables import comparison_table, metric_table, results_markdown
    from ..train.checkpoint import atomic_write_text
    from .stats import compare_to_reference

    if not cells:
        print(f"no finished cells in {out} yet: nothing to report")
        return {}
    records, per_image = collect(cells)
    class_names = records[0]["class_names"]
    fg = class_names[1:]
    vessel = "auc" in records[0]["metrics"]
    methods = [m.name for m in cfg.methods if any(r["method"] == m.name for r in records)]
    budgets = [budget_label(b) for b in cfg.budgets if any(r["budget"] == budget_label(b) for r in records)]
    _write_csv(out / "results.csv", result_rows(records))
    _write_csv(out / "per_image.csv", per_image)
    panels = [(f"dice_{c}", c) for c in fg] + ([("dice_mean", "mean over classes")] if len(fg) > 1 else [])
    comparisons = compare_to_reference(per_image, [k for k, _ in panels] + [f"hd95_{c}" for c in fg])
    _write_csv(out / "comparisons.csv", comparisons)

    tables = []
    for key, label in panels:
        tables.append(metric_table(aggregate(per_image, key), methods, budgets, f"Dice ({label}), test set", True))
        comp = comparison_table(comparisons, methods, budgets, key, f"Paired Dice difference vs random init ({label})")
        if comp.rows:
            tables.append(comp)
    for c in fg:
        tables.append(metric_table(aggregate(per_image, f"hd95_{c}"), methods, budgets, f"HD95 ({c}), pixels, lower is better", False, digits=1))
    if vessel:
        tables.append(metric_table(aggregate(per_image, "auc"), methods, budgets, "AUC inside the field of view", True))
        tables.append(metric_table(aggregate(per_image, "accuracy"), methods, budgets, "Accuracy inside the field of view", True))
    n_labels = {(r["method"], r["budget"]): r["n_labels"] for r in records}
    seeds = sorted({r["seed"] for r in records})
    intro = [f"Data: `{cfg.data}`; image size {list(cfg.image_size)}; profile: {cfg.profile or '-'}; seeds: {seeds}; "
             f"{len(records)} finished cells of {len(cfg.methods) * len(cfg.budgets) * len(cfg.seeds)}.",
             "Labeled training images per budget: " + ", ".join(f"{b} = {n_labels.get(('random', b), '?')}" for b in budgets) + ".",
             f"Pretraining: {cfg.pretrain or 'defaults'}. Fine-tuning (same for every method): {cfg.finetune or 'defaults'}.",
             "Cells: mean +- std over test images pooled over seeds; best per column in bold. Paired tests match "
             "(test image, seed) against random init: Wilcoxon signed-rank, or an exact sign-flip permutation test for n < 6."]
    prov = provenance(cfg.device or "cpu")
    train_s = sum(float(r.get("train_seconds") or 0) + float(r.get("eval_seconds") or 0) for r in records)
    intro += provenance_markdown(prov, wall_seconds) + [f"Fine-tune + evaluation time summed over cells: {train_s / 60:.1f} min (pretraining times: see each pretrain/*/metrics.csv)."]
    atomic_write_text(out / "provenance.json", json.dumps({**prov, "wall_seconds_last_invocation": wall_seconds}, indent=2))
    md = results_markdown(f"Benchmark: {cfg.name}", intro, tables)
    atomic_write_text(out / "results.md", md)

    curves: dict[str, dict[str, list[tuple[float, float, float]]]] = {}
    for key, label in panels:
        agg = aggregate(per_image, key)
        curves[label] = {m: [(float(n_labels.get((m, b)) or 0), *agg[(m, b)][:2]) for b in budgets if (m, b) in agg] for m in methods}
    plot = dice_vs_labels(curves, out / "dice_vs_labels.png", title=f"{cfg.name}: test Dice vs labeled images")

    examples: dict[str, list[tuple[str, Path]]] = {}
    first = budgets[0] if budgets else None
    for m in methods:
        cell = next((c for c in cells if c.method.name == m and budget_label(c.budget) == first), None)
        if cell is not None:
            pngs = sorted((cell.path / "eval-test" / "overlays").glob("*.png"))[: cfg.max_overlays]
            examples[f"{m} (budget {first}, seed {cell.seed})"] = [(p.stem, p) for p in pngs]
    html = write_html_report(out / "report.html", f"Benchmark: {cfg.name}", intro, tables,
                             [("Test Dice vs number of labeled training images (band: +- std)", plot)], examples)
    return {"results.csv": out / "results.csv", "per_image.csv": out / "per_image.csv", "comparisons.csv": out / "comparisons.csv",
            "results.md": out / "results.md", "dice_vs_labels.png": plot, "report.html": html}


def _plain(cfg: BenchmarkConfig) -> dict[str, Any]:
    d = {k: getattr(cfg, k) for k in cfg.__dataclass_fields__ if k != "methods"}
    d = json.loads(json.dumps(d, default=list))
    d["methods"] = [{"name": m.name, "pretrain": m.pretrain, "method": m.method, "pretrain_options": m.pretrain_options,
                     "finetune": m.finetune} for m in cfg.methods]
    return d


def describe_plan(cfg: BenchmarkConfig, out: Path) -> str:
    """Human-readable plan (for --dry-run): every pretraining run and cell with its state."""
    from ..methods import METHODS

    cells = plan(cfg, out)
    lines = [f"benchmark {cfg.name} (profile {cfg.profile or '-'}): data {cfg.data}, image size {list(cfg.image_size)}",
             f"methods {[m.name for m in cfg.methods]}, budgets {[budget_label(b) for b in cfg.budgets]}, seeds {cfg.seeds}",
             f"pretraining: {cfg.pretrain}", f"fine-tuning: {cfg.finetune}", f"output: {out}", ""]
    seen = set()
    for c in cells:
        if c.pretrain_dir is not None and c.pretrain_dir not in seen:
            seen.add(c.pretrain_dir)
            state = "done" if (c.pretrain_dir / "pretrain_done.json").is_file() else "partial" if c.pretrain_dir.exists() else "todo"
            avail = "" if c.method.pretrain in METHODS else "  (METHOD NOT AVAILABLE)"
            lines.append(f"pretrain  {c.method.pretrain:<18} seed {c.seed}: {state:<8} {c.pretrain_dir}{avail}")
    for c in cells:
        state = "done" if c.done else "partial" if c.path.exists() else "todo"
        lines.append(f"finetune  {c.method.name:<18} b{budget_label(c.budget):<5} s{c.seed}: {state:<8} {c.path}")
    todo = sum(not c.done for c in cells)
    lines.append(f"\n{len(seen)} pretraining runs, {len(cells)} cells ({todo} to do)")
    return "\n".join(lines)


__all__ = ["BenchmarkConfig", "MethodEntry", "Cell", "BenchmarkResult", "load_benchmark_config", "plan", "run_benchmark",
           "describe_plan", "budget_label", "fingerprint"]
