"""Benchmark config, plan, tables, plot and HTML report (no training here; see tests/cli)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import yaml

from localdisc.errors import ConfigError
from localdisc.report.html import write_html_report
from localdisc.report.plots import dice_vs_labels
from localdisc.report.tables import comparison_table, label_savings, metric_table, savings_table
from localdisc.tasks.benchmark import aggregate, finetune_config, load_benchmark_config, plan, pretrain_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _write(tmp_path: Path, cfg: dict) -> Path:
    p = tmp_path / "bench.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


BASE = {"data": "synthetic-fundus:8", "image_size": [32, 32], "budgets": [2, "all"], "seeds": [0, 1],
        "finetune": {"steps": 5}, "pretrain": {"steps": 4},
        "methods": ["ld", {"name": "ld+pdcr", "pretrain": "ld", "finetune": {"pdcr": True}}, "simclr"],
        "profiles": {"full": {"image_size": [64, 64], "finetune": {"batch_size": 8}, "seeds": [3]}}}


def test_random_reference_added_first_and_plan_shares_pretraining(tmp_path):
    cfg = load_benchmark_config(_write(tmp_path, BASE))
    assert [m.name for m in cfg.methods] == ["random", "ld", "ld+pdcr", "simclr"]
    cells = plan(cfg, tmp_path / "out")
    assert len(cells) == 4 * 2 * 2
    pre = {c.method.name: c.pretrain_dir for c in cells if c.seed == 0}
    assert pre["random"] is None
    assert pre["ld"] == pre["ld+pdcr"] == tmp_path / "out" / "pretrain" / "ld-s0"
    assert {c.path.name for c in cells if c.method.name == "ld"} == {"b2-s0", "ball-s0", "b2-s1", "ball-s1"}


def test_profile_deep_merges_and_methods_filter(tmp_path):
    cfg = load_benchmark_config(_write(tmp_path, BASE), profile="full", methods=["simclr"])
    assert cfg.image_size == (64, 64) and cfg.seeds == [3]
    assert cfg.finetune == {"steps": 5, "batch_size": 8}  # merged, not replaced
    assert [m.name for m in cfg.methods] == ["random", "simclr"]
    with pytest.raises(ConfigError, match="profile"):
        load_benchmark_config(_write(tmp_path, BASE), profile="nope")
    with pytest.raises(ConfigError, match="not in the config"):
        load_benchmark_config(_write(tmp_path, BASE), methods=["densecl"])


def test_every_method_gets_the_same_protocol(tmp_path):
    cfg = load_benchmark_config(_write(tmp_path, BASE))
    cells = plan(cfg, tmp_path / "out")
    fts = [finetune_config(cfg, c.method, c.budget, c.seed, c.path, c.pretrain_dir) for c in cells if c.budget == 2 and c.seed == 1]
    for key in ("data", "seed", "split_seed", "labels", "val_fraction", "steps", "batch_size", "image_size"):
        assert len({str(getattr(f, key)) for f in fts}) == 1, key
    assert [f.pdcr for f in fts] == [False, False, True, False]
    assert [bool(f.init) for f in fts] == [False, True, True, True]
    p = pretrain_config(cfg, cfg.methods[1], 1, tmp_path / "p", cfg.data)
    assert p.split == "train" and p.seed == 1 and p.steps == 4 and p.image_size == (32, 32)


@pytest.mark.parametrize("bad, match", [
    ({"methods": [{"name": "x", "pretrain": "ld", "finetune": {"steps": 9}}]}, "may not change"),
    ({"methods": [{"name": "x", "finetune": {"labels": 3}}]}, "may not change"),
    ({"methods": ["ld", "ld"]}, "duplicate"),
    ({"methods": [{"name": "random", "finetune": {"pdcr": True}}]}, "reference"),
    ({"finetune": {"seed": 3}}, "set by the benchmark"),
    ({"budgets": [0]}, "budget"),
    ({"budgets": [2.5]}, "budget"),
    ({"pretrain_seed": -1}, "pretrain_seed must be an integer from 0"),
    ({"pretrain_seed": 2**31}, "pretrain_seed must be an integer from 0"),
    ({"pretrain_seed": "1"}, "pretrain_seed must be an integer from 0"),
    ({"colour": "red"}, "unknown key"),
])
def test_bad_configs_are_rejected(tmp_path, bad, match):
    with pytest.raises(ConfigError, match=match):
        load_benchmark_config(_write(tmp_path, {**BASE, **bad}))


def test_budget_forms(tmp_path):
    cfg = load_benchmark_config(_write(tmp_path, {**BASE, "budgets": [1, 5.0, 0.25, "25%", "all"]}))
    assert cfg.budgets == [1, 5, 0.25, 0.25, "all"]


def test_budgets_chosen_on_the_command_line(tmp_path):
    path = _write(tmp_path, {**BASE, "budgets": [2, 0.25, "all"]})
    assert load_benchmark_config(path, budgets=["all", "2"]).budgets == [2, "all"]  # the profile's order
    assert load_benchmark_config(path, budgets=["25%"]).budgets == [0.25]
    for typed in ("{", "!!python/name:os.system", "abc%", "nan", "1e400", "-2"):  # one clear line, never a traceback
        with pytest.raises(ConfigError, match=f"budget '{re.escape(typed)}' must be"):
            load_benchmark_config(path, budgets=[typed])
    with pytest.raises(ConfigError, match=r"--budgets \['5'\] not in the profile \(budgets: 2, 0.25, all\)"):
        load_benchmark_config(path, budgets=["5"])


@pytest.mark.parametrize("name, classes, gpu_profile", [("ph2", 2, True), ("cxr", 4, True), ("drive", 2, True), ("synthetic", 2, True),
                                                    ("hippocampus", 3, False)])
def test_shipped_configs_parse_in_every_profile(tmp_path, name, classes, gpu_profile):
    path = CONFIGS / f"{name}.yaml"
    profiles = yaml.safe_load(path.read_text()).get("profiles", {})
    assert "quick" in profiles and ("full" in profiles) == gpu_profile
    for profile in profiles:
        cfg = load_benchmark_config(path, profile=profile)
        assert cfg.num_classes == classes and cfg.methods[0].name == "random"
        cells = plan(cfg, tmp_path)
        assert len(cells) == len(cfg.methods) * len(cfg.budgets) * len(cfg.seeds)
        for c in cells[:: max(1, len(cells) // 7)]:  # every option name is a real config field
            finetune_config(cfg, c.method, c.budget, c.seed, c.path, c.pretrain_dir)
            if c.method.pretrain:
                pretrain_config(cfg, c.method, c.seed, tmp_path, cfg.data)
    if name == "ph2":
        names = [m.name for m in load_benchmark_config(path).methods]
        assert names == ["random", "ld", "simclr", "densecl", "genesis", "cluster-contrast", "ld+pdcr+uafs", "random+pdcr+uafs"]


def test_aggregate_pools_images_and_seeds_and_skips_nan():
    rows = [{"method": "m", "budget": "2", "x": v} for v in ("0.2", "0.4", "nan", "")]
    mean, std, n = aggregate(rows, "x")[("m", "2")]
    assert (mean, std, n) == (pytest.approx(0.3), pytest.approx(0.1), 2)


def test_metric_table_bolds_best_per_column():
    agg = {("random", "2"): (0.5, 0.1, 5), ("ld", "2"): (0.7, 0.1, 5), ("random", "all"): (0.9, 0.0, 5), ("ld", "all"): (0.8, 0.0, 5)}
    t = metric_table(agg, ["random", "ld"], ["2", "all"], "Dice")
    md = t.to_markdown()
    assert "| ld | **0.700 ± 0.100** | 0.800 ± 0.000 |" in md
    assert "| random | 0.500 ± 0.100 | **0.900 ± 0.000** |" in md
    low = metric_table(agg, ["random", "ld"], ["2", "all"], "HD95", higher_is_better=False)
    assert low.bold == {(0, 1), (1, 2)}
    assert "<b>0.500 ± 0.100</b>" in low.to_html()


def test_comparison_table_shows_difference_ci_and_the_bootstrap_p():
    row = lambda m, b, d, lo, hi, p: {"method": m, "budget": b, "metric": "dice_x", "n_images": 10, "n_pairs": 30,  # noqa: E731
                                      "mean_diff": d, "ci_low": lo, "ci_high": hi, "p_value": p, "p_holm": min(1.0, 3 * p)}
    comps = [row("ld", "2", 0.05, 0.01, 0.09, 0.004), row("ld", "all", -0.01, -0.03, 0.01, 0.5), row("sim", "2", 0.1, -0.01, 0.2, 0.08),
             {**row("sim", "all", -0.04, -0.07, -0.01, 0.01), "effect_size": -0.62}]
    t = comparison_table(comps, ["random", "ld", "sim"], ["2", "all"], "dice_x", "vs random")
    assert t.rows == [["ld", "+0.050 [+0.010, +0.090] p=0.004", "-0.010 [-0.030, +0.010] p=0.5"],
                      ["sim", "+0.100 [-0.010, +0.200] p=0.08", "-0.040 [-0.070, -0.010] d=-0.62 p=0.01"]]
    assert t.bold == {(0, 1)}  # better = CI above 0
    assert t.shade == {(0, 1): "better", (1, 2): "worse"}
    assert "<td class='better'><b>+0.050" in t.to_html() and "<td class='worse'>-0.040" in t.to_html()
    assert "Holm" in t.note and "10 test images" in t.note and "effect size" in t.note


def test_label_savings_reads_the_reference_curve_in_log_labels():
    means = {("random", "1"): 0.6, ("random", "4"): 0.8, ("random", "16"): 0.9, ("ld", "1"): 0.7, ("ld", "4"): 0.95, ("ld", "16"): 0.5}
    n = {(m, b): int(b) for m, b in means}
    rows = {r["budget"]: r for r in label_savings(means, n, ["random", "ld"], ["1", "4", "16"])}
    assert rows["1"]["reference_labels_needed"] == pytest.approx(2.0)  # halfway 0.6 -> 0.8 in log2: 2 labels
    assert rows["1"]["savings"] == pytest.approx(2.0)
    assert rows["4"]["beyond"] and rows["4"]["savings"] is None  # above every measured budget of random init
    assert rows["16"]["savings"] is None and not rows["16"]["beyond"]  # below random init's smallest budget: none
    t = savings_table(list(rows.values()), ["random", "ld"], ["1", "4", "16"], 16, "savings")
    assert t.rows == [["ld", "x2.0 (2.0 labels)", ">x4.0 (> 16 labels)", "none"]]


def test_plot_and_self_contained_html(tmp_path):
    curves = {"lesion": {"random": [(2, 0.5, 0.1), (10, 0.7, 0.05)], "ld": [(2, 0.6, 0.1), (10, 0.75, math.nan)]}}
    png = dice_vs_labels(curves, tmp_path / "curve.png", title="t")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    t = metric_table({("random", "2"): (0.5, 0.1, 3)}, ["random"], ["2"], "Dice <lesion>")
    html = write_html_report(tmp_path / "r.html", "Report", ["**Data** `ph2:<x>` {'a': 1}"], [t], [("curve", png)],
                             {"random": [("img1", png), ("missing", tmp_path / "nope.png")]}).read_text()
    assert html.count("data:image/png;base64,") == 1 and html.count("data:image/jpeg;base64,") == 1  # plot as PNG, example as JPEG
    assert "Dice &lt;lesion&gt;" in html and "src='data:" in html
    assert "<p><b>Data</b> <code>ph2:&lt;x&gt;</code> {&#x27;a&#x27;: 1}</p>" in html  # Markdown rendered, the rest escaped
    assert "src='/" not in html and "src=\"" not in html and "http" not in html


def test_pretraining_data_excludes_future_test_images(tmp_path):
    """Data without splits: pretraining reads a manifest of exactly the images fine-tuning will
    treat as train, so images later held out as test are never seen without labels either."""
    import numpy as np
    from PIL import Image

    from localdisc.data.sources import resolve_source
    from localdisc.tasks.benchmark import _pretrain_data
    from localdisc.train.finetune_data import assigned_splits

    for sub in ("images", "masks"):
        (tmp_path / "d" / sub).mkdir(parents=True)
    for i in range(10):
        Image.fromarray(np.full((8, 8), 20 * i, np.uint8)).save(tmp_path / "d" / "images" / f"im{i}.png")
        Image.fromarray(np.eye(8, dtype=np.uint8) * 255).save(tmp_path / "d" / "masks" / f"im{i}.png")
    cfg = load_benchmark_config(_write(tmp_path, {**BASE, "data": str(tmp_path / "d"), "test_fraction": 0.3}))
    spec = _pretrain_data(cfg, tmp_path / "out")
    assert spec.endswith("train_images.csv")
    train_ids = {s.id for s in resolve_source(spec)}
    split = assigned_splits(resolve_source(cfg.data), cfg.split_seed, cfg.test_fraction)
    assert train_ids == {s.id for s in split if s.split == "train"} and len(train_ids) == 7
    # data that defines its own splits is used as is (pretraining selects split=train)
    assert _pretrain_data(load_benchmark_config(_write(tmp_path, BASE)), tmp_path / "out2") == BASE["data"]


def test_data_paths_relative_to_the_config_file(tmp_path, monkeypatch):
    (tmp_path / "shared" / "PH2").mkdir(parents=True)
    (tmp_path / "repo" / "configs").mkdir(parents=True)
    cfg = tmp_path / "repo" / "configs" / "b.yaml"
    cfg.write_text(yaml.safe_dump({**BASE, "data": "ph2:../../shared/PH2"}))
    monkeypatch.chdir(tmp_path)  # not where the config is
    assert load_benchmark_config(cfg).data == f"ph2:{tmp_path / 'shared' / 'PH2'}"
    for spec in ("synthetic-fundus:8", f"ph2:{tmp_path}/x", "cxr:relative/to/cwd"):  # kept as written
        cfg.write_text(yaml.safe_dump({**BASE, "data": spec}))
        assert load_benchmark_config(cfg).data == spec


def test_older_cells_with_the_automatic_protocol_stay_reusable():
    from localdisc.config import build_config
    from localdisc.tasks.benchmark_config import effective_settings
    from localdisc.train.finetune import FinetuneConfig

    old = {"init": "", "freeze_encoder_steps": -1, "encoder_lr_scale": -1.0, "labels": 2}
    assert effective_settings(old) == {"init": "", "freeze_encoder_steps": 0, "encoder_lr_scale": 1.0, "labels": 2}
    with_init = {**old, "init": "ld-s0"}
    assert effective_settings(with_init) == with_init  # with --init, -1 meant a protocol that is not the default: no match
    cfg = build_config(FinetuneConfig, {"labels": 2})
    assert cfg.labels == 2 and isinstance(cfg.labels, int)  # a count stays a count in records (2, not 2.0)
