"""verdict: repeated k-fold over the user's labeled images, random vs pretrained on the same folds,
paired per (image, repetition), one line per pretrained run."""

import csv
import json

import numpy as np
from PIL import Image

from localdisc.cli.main import main
from localdisc.data.records import compose_mask, load_sample_mask
from localdisc.data.sources import resolve_source
from localdisc.evaluation.stats import cluster_bootstrap
from localdisc.tasks.verdict import agreement, fold_manifests, summarize

TINY = ["--encoder-channels", "4", "8", "8", "--decoder-channels", "8", "8", "--image-size", "24", "24", "--batch-size", "2"]


def pairs(root, n=6, size=(24, 24)):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        m = np.zeros(size, np.uint8)
        m[4 + i % 3: 14, 6:16 + i % 4] = 255
        Image.fromarray((rng.integers(0, 80, size) + (m > 0) * 150).astype(np.uint8)).save(root / "images" / f"p{i}.png")
        Image.fromarray(m).save(root / "masks" / f"p{i}.png")
    return root


def test_verdict_end_to_end(tmp_path, capsys):
    data = pairs(tmp_path / "labeled")
    assert main(["pretrain", "--method", "genesis", "--data", str(data / "images"), "--out", str(tmp_path / "pre"), "--steps", "2", *TINY]) == 0
    capsys.readouterr()
    assert main(["verdict", "--data", str(data), "--init", str(tmp_path / "pre"), "--out", str(tmp_path / "v"), "--folds", "3",
                 "--repeats", "2", "--steps", "2", "--image-size", "24", "24", "--batch-size", "2"]) == 0
    printed = capsys.readouterr().out
    line = [x for x in printed.splitlines() if x.startswith("verdict: pre ")]
    assert len(line) == 1 and any(w in line[0] for w in ("helps", "hurts", "cannot tell")) and "6 images x 2 repetition" in line[0]
    rows = list(csv.DictReader((tmp_path / "v" / "per_image.csv").open()))
    # every image scored once per repetition by each init, on the same folds
    for init in ("random", "pre"):
        got = sorted((r["id"], r["repetition"]) for r in rows if r["init"] == init)
        assert got == sorted((f"p{i}", str(r)) for i in range(6) for r in range(2))
    folds = {(r["id"], r["repetition"]): r["fold"] for r in rows if r["init"] == "random"}
    assert all(folds[(r["id"], r["repetition"])] == r["fold"] for r in rows)
    # the CI is the benchmark's bootstrap applied to the per-image differences
    result = json.loads((tmp_path / "v" / "verdict.json").read_text())["comparisons"]["pre"]
    dice = {(r["init"], r["id"], int(r["repetition"])): float(r["dice"]) for r in rows}
    d = np.array([[dice[("pre", f"p{i}", r)] - dice[("random", f"p{i}", r)] for r in range(2)] for i in range(6)])
    lo, hi, p = cluster_bootstrap(d)
    assert (result["ci_low"], result["ci_high"], result["p_value"]) == (lo, hi, p)
    assert (tmp_path / "v" / "verdict.md").is_file() and (tmp_path / "v" / ".localdisc").is_file()
    # random init trains the pretraining run's network: only the initial weights differ
    nets = {init: json.loads((tmp_path / "v" / "runs" / f"{init}-r0-f0" / "model.json").read_text())["unet"] for init in ("random", "pre")}
    assert nets["random"] == nets["pre"] and nets["random"]["encoder_channels"] == [4, 8, 8]


def chest_layout(root, n=5, size=(24, 32)):
    """A tiny folder in the chest X-ray layout: masks composed from per-structure crops, a left/right pair."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    h, w = size
    split = ["image,structure_key,patient,split"]
    structure = ["Template Name,Image,Mask,Resolution,Top,Left,Width,Height"]
    for i in range(n):
        Image.fromarray(np.full((h, w, 3), 40 + 30 * i, np.uint8)).save(root / "images" / f"x{i}.jpg")  # RGB file, grey content
        split.append(f"images/x{i}.jpg,key{i},{i},train")
        for name, left in (("Left Lung", w // 2 + 2), ("Right Lung", 2), ("Cardiomediastinum", w // 2 - 4)):
            Image.fromarray(np.full((10, 8), 255, np.uint8)).save(root / "masks" / f"{name[0]}{i}.png")
            structure.append(f"{name},key{i},masks/{name[0]}{i}.png,{w}x{h},{4 + i},{left},8,10")
    (root / "split.csv").write_text("\n".join(split) + "\n")
    (root / "structure.csv").write_text("\n".join(structure) + "\n")
    return f"cxr:{root}"


def test_fold_manifests_keep_a_layouts_composed_masks_and_flip_pairs(tmp_path):
    samples = resolve_source(chest_layout(tmp_path / "cxr"))
    schedule = fold_manifests(samples, folds=2, repeats=1, seed=0, folder=tmp_path / "folds")
    for _, _, manifest in schedule:
        listed = resolve_source(str(manifest))
        assert [s.id for s in listed] == [s.id for s in samples]
        for mine, theirs in zip(listed, samples):
            assert np.array_equal(load_sample_mask(mine), compose_mask(theirs))
            assert mine.extra["flip_pairs"] == [(1, 2)] and mine.extra["channels"] == 1
            assert mine.extra["class_names"] == ["background", "Left Lung", "Right Lung", "Cardiomediastinum"]
        assert sorted(s.split for s in listed).count("test") in (2, 3)


def test_verdict_on_a_layout_with_composed_masks(tmp_path, capsys):
    spec = chest_layout(tmp_path / "cxr")
    images = tmp_path / "cxr" / "images"
    assert main(["pretrain", "--method", "genesis", "--data", str(images), "--in-channels", "1", "--out", str(tmp_path / "pre"), "--steps", "1", *TINY]) == 0
    assert main(["verdict", "--data", spec, "--init", str(tmp_path / "pre"), "--out", str(tmp_path / "v"), "--folds", "2",
                 "--repeats", "1", "--steps", "1", "--image-size", "24", "32", "--batch-size", "2"]) == 0
    model = json.loads((tmp_path / "v" / "runs" / "random-r0-f0" / "model.json").read_text())
    assert model["flip_pairs"] == [[1, 2]] and model["num_classes"] == 4
    rows = list(csv.DictReader((tmp_path / "v" / "per_image.csv").open()))
    assert sorted(r["id"] for r in rows if r["init"] == "pre") == [f"x{i}" for i in range(5)]


def test_runs_of_different_networks_are_refused(tmp_path):
    data = pairs(tmp_path / "labeled")
    wide = [*TINY[:1], "8", "8", "8", *TINY[4:]]
    for name, widths in (("a", TINY), ("b", wide)):
        assert main(["pretrain", "--method", "genesis", "--data", str(data / "images"), "--out", str(tmp_path / name), "--steps", "1", *widths]) == 0
    assert main(["verdict", "--data", str(data), "--init", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "v")]) == 2
    assert not (tmp_path / "v").exists()


def test_summary_reads_the_ci():
    scores = [{"id": f"i{i}", "repetition": r, "init": init, "dice": 0.5 + (0.1 if init == "ld" else 0) + 0.01 * i}
              for i in range(8) for r in range(2) for init in ("random", "ld")]
    out = summarize(scores, ["random", "ld"], [0, 1], 60)
    assert out["comparisons"]["ld"]["verdict"] == "helps" and "use ld" in out["lines"][0]
    assert "p<0.001" in out["lines"][0] and "p=0," not in out["lines"][0]  # every resample is above 0
    worse = [{**s, "dice": s["dice"] - (0.2 if s["init"] == "ld" else 0)} for s in scores]
    assert "use random init" in summarize(worse, ["random", "ld"], [0, 1], 60)["lines"][0]


def test_agreement_reads_sign_and_ci():
    bench = [{"budget": "2", "mean_diff": 0.04, "ci_low": -0.01, "ci_high": 0.09, "verdict": "cannot tell"},
             {"budget": "5", "mean_diff": 0.03, "ci_low": 0.01, "ci_high": 0.05, "verdict": "helps"},
             {"budget": "10", "mean_diff": -0.02, "ci_low": -0.03, "ci_high": -0.01, "verdict": "hurts"}]
    unsure = agreement({"verdict": "cannot tell", "mean_diff": 0.05}, bench)
    assert [r["agrees"] for r in unsure] == [True, False, False] and [r["same_sign"] for r in unsure] == [True, True, False]
    helps = agreement({"verdict": "helps", "mean_diff": 0.05}, bench)
    assert [r["agrees"] for r in helps] == [True, True, False]
    hurts = agreement({"verdict": "hurts", "mean_diff": -0.05}, bench)
    assert [r["agrees"] for r in hurts] == [False, False, True]
