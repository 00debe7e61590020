"""Shape-guided vessel discovery without labels: ld-shape with SIMULATED vessel priors.

1. Pretrain ``ld-shape`` (K=8, LD stage 1 then stage 2 + adversarial shape prior on cluster 0)
   on the synthetic fundus TRAIN images; priors come from the shape simulator (``--prior-kind``:
   whole-fundus vasculature ``retina``, or generic ``vessels`` trees), never the fundus labels.
2. Score on the synthetic fundus TEST images, inside the field of view: Dice/IoU/accuracy/AUC of
   a_0 > 0.5 ("threshold") and of the prototype rule, against two unsupervised baselines on the
   green channel (vessels are dark): Otsu threshold, and Frangi vesselness thresholded by Otsu.
3. The real photograph ``skimage.data.retina()`` (unlabeled): the same model and baselines,
   saved side by side as an overlay PNG (image | ld-shape | Otsu | Frangi).

    python benchmarks/discover_vessels.py [--quick]

Writes benchmarks/results/discover_vessels.{json,md} and discover_vessels_retina.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from localdisc.runtime.provenance import provenance, provenance_markdown

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _pretrain import add_pretrain_args, images_own_size, pretrain_config, usable_cpus  # noqa: E402


def green_baselines(image: np.ndarray, fov: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{name: (binary (H, W), score (H, W))} for Otsu on the inverted green channel and Frangi."""
    from skimage.filters import frangi, threshold_otsu

    g = image[1] if image.shape[0] == 3 else image[0]
    inv = 1.0 - g
    # background-corrected darkness: vessels are thin dark lines on a smooth background
    from scipy.ndimage import gaussian_filter

    bg = gaussian_filter(inv, sigma=max(2.0, 0.02 * max(g.shape)))
    dark = np.clip(inv - bg, 0, None)
    otsu = dark > threshold_otsu(dark[fov])
    fr = frangi(g, sigmas=np.linspace(1, max(2.0, 0.008 * max(g.shape)), 4), black_ridges=True)
    fr = np.where(fov, fr, 0)
    frangi_bin = fr > threshold_otsu(fr[fov]) if fr[fov].max() > 0 else np.zeros_like(fov)
    return {"otsu": (otsu & fov, dark), "frangi": (frangi_bin & fov, fr)}


def prior_folder(folder: Path, args) -> str:
    """Simulated vessel masks written as PNGs (what a user gets from `localdisc simulate-shapes`).

    ``--prior-kind retina``: whole-fundus vasculature (arcades from a disc, circular FOV);
    ``vessels``: generic branching trees over the whole canvas (``--prior-roots`` trees each).
    Simulated at ``--prior-size`` (resolved in main: default the images' own size), then resized with the images
    by ld-shape, so that priors and images go through the same resampling.
    """
    from localdisc.data.shapes import write_priors

    folder = folder.with_name(f"{folder.name}_{prior_tag(args)}")
    if not any(folder.glob("*.png")):
        knobs = {"n_roots": args.prior_roots} if args.prior_kind == "vessels" else {}
        write_priors(args.prior_kind, args.priors, tuple(args.prior_size), folder, seed=1, **knobs)
    return str(folder)


def prior_tag(args) -> str:
    """KIND_HxW: names the prior folder and the run trained with it."""
    return f"{args.prior_kind}_{'x'.join(map(str, args.prior_size))}"


def run_name(args) -> str:
    """The run folder's name: the prior tag plus the options that change what is learned."""
    name = f"ld_shape_{prior_tag(args)}" + (f"_shift{args.shift:g}" if args.shift else "")
    if args.crop_size:
        name += f"_crop{'x'.join(map(str, args.crop_size))}_s{args.crop_scale[0]:g}-{args.crop_scale[1]:g}"
    return name


def train_shape(data: str, out: Path, args, steps: int | None = None) -> Path:
    """Train (or continue) the ld-shape run in ``out`` up to ``steps`` (default --pretrain-steps).

    Stage 1's length and the learning-rate halving are fixed (--stage1-steps, --lr-halve-every, or
    their defaults from --pretrain-steps), so a run grown to S steps in segments (the curve) is the
    run a single S-step call would have trained up to S. An existing run trained with other
    method settings is refused, not continued."""
    from localdisc.methods import get_method
    from localdisc.methods.ld_shape import ShapeLDConfig

    steps = steps or args.pretrain_steps
    n1 = stage1_steps(args)
    if trained_steps(out, args) >= steps:
        return out
    cfg = pretrain_config(args, data, out, steps=steps, method="ld-shape", resume=True, overwrite=False,  # a killed benchmark continues
                          lr_halve_every=args.lr_halve_every or max(1, (args.pretrain_steps - n1) // 2), checkpoint_every=args.checkpoint_every)
    crop = dict(crop_size=tuple(args.crop_size), crop_scale=tuple(args.crop_scale)) if args.crop_size else {}
    mcfg = ShapeLDConfig(stage="both", stage1_steps=n1, grid=args.grid, num_clusters=args.num_clusters, prior_masks=prior_folder(out.parent / "priors", args), adv_weight=args.adv_weight,
                         disc_width=args.disc_width, disc_layers=args.disc_layers, disc_input=args.disc_input, disc_lr_scale=args.disc_lr_scale, shift=args.shift, **crop)
    check_same_settings(out, mcfg)
    get_method("ld-shape").run_schedule(cfg, mcfg)
    return out


def check_same_settings(out: Path, mcfg) -> None:
    """Refuse to continue a run in ``out`` whose recorded method settings differ from ``mcfg``
    (the run folder's name does not carry every setting, e.g. the discriminator's width)."""
    import yaml

    from localdisc.config import to_dict

    if not (out / "config.yaml").is_file():
        return
    saved = (yaml.safe_load((out / "config.yaml").read_text()) or {}).get("method_config", {})
    wanted = to_dict(mcfg)
    norm = lambda v: list(v) if isinstance(v, (list, tuple)) else v  # noqa: E731  (YAML gives lists for tuples)
    differ = [k for k in wanted if k != "stage" and k in saved and norm(saved[k]) != norm(wanted[k])]
    if differ:
        raise SystemExit(f"{out}: this run was trained with other settings ({', '.join(f'{k}: {saved[k]} != {wanted[k]}' for k in differ)}); use another --work")


def stage1_steps(args) -> int:
    return args.stage1_steps or max(1, args.pretrain_steps // 5)


def trained_steps(out: Path, args) -> int:
    """Steps (stage 1 + 2) of the finished weights in ``out``; 0 when it has none yet."""
    from localdisc.train.checkpoint import latest_checkpoint

    done = latest_checkpoint(out) if (out / "model.safetensors").is_file() else None
    return 0 if done is None else stage1_steps(args) + int(json.loads((done / "meta.json").read_text())["step"])


def score_test(model, test, baselines: bool = True) -> dict[str, dict[str, float]]:
    """Mean Dice/IoU/accuracy/AUC inside the FOV over the ``test`` images: ld-shape rules, Otsu, Frangi."""
    from localdisc.data.records import load_sample_fov, load_sample_image, load_sample_mask
    from localdisc.tasks.discover import binary_scores, predict_maps

    scores: dict[str, list[dict]] = {"ld-shape threshold": [], "ld-shape argmax": [], "ld-shape prototype": [], **({"otsu": [], "frangi": []} if baselines else {})}
    for s in test:
        img = load_sample_image(s, model.channels)
        truth = load_sample_mask(s) > 0
        fov = load_sample_fov(s)
        fov = np.ones_like(truth) if fov is None else fov
        a0 = predict_maps(model, img, "shape", "threshold")
        for rule in ("threshold", "argmax", "prototype"):
            prob = a0 if rule == "threshold" else predict_maps(model, img, "shape", rule)
            scores[f"ld-shape {rule}"].append(binary_scores(prob > 0.5, truth, a0 if rule == "argmax" else prob, fov))  # AUC of a binary map is meaningless: use a_0
        for name, (binary, score) in (green_baselines(load_sample_image(s, 3), fov).items() if baselines else ()):
            scores[name].append(binary_scores(binary, truth, score, fov))
    return {m: {k: float(np.mean([r[k] for r in rows if k in r])) for k in ("dice", "iou", "accuracy", "auc")} for m, rows in scores.items()}


def save_curve_plot(curve: list[dict], path: Path) -> None:
    """Dice of the ld-shape rules against total steps, with Otsu's and Frangi's as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    steps = [c["steps"] for c in curve]
    for rule in ("threshold", "argmax", "prototype"):
        ax.plot(steps, [c["scores"][f"ld-shape {rule}"]["dice"] for c in curve], "o-", label=f"ld-shape {rule}")
    for base, style in (("otsu", "--"), ("frangi", ":")):
        ax.axhline(curve[-1]["scores"][base]["dice"], ls=style, color="gray", label=base)
    ax.set_xlabel("pretraining steps (stage 1 + stage 2)")
    ax.set_ylabel("Dice inside the FOV (test)")
    ax.set_ylim(0, 1)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="synthetic-fundus:40:256x256")
    p.add_argument("--run", default=None, help="an ld-shape run (default: train one into --work)")
    p.add_argument("--work", default="benchmarks/_work/discover_vessels")
    add_pretrain_args(p)
    p.add_argument("--priors", type=int, default=200, help="simulated vessel prior masks")
    p.add_argument("--prior-kind", default="retina", choices=["retina", "vessels"], help="simulated priors: whole-fundus vasculature (retina) or generic trees (vessels); see benchmarks/prior_gap.py")
    p.add_argument("--prior-size", type=int, nargs=2, default=None, help="simulate the priors at this size (default: the images' own size)")
    p.add_argument("--prior-roots", type=int, default=4, help="--prior-kind vessels: trees per mask (simulator knob n_roots)")
    p.add_argument("--adv-weight", type=float, default=1.0)
    p.add_argument("--num-clusters", type=int, default=8, help="K: clusters of the clustering head (cluster 0 is shape-guided)")
    p.add_argument("--disc-input", default="argmax", help="what D judges: argmax, threshold or soft")
    p.add_argument("--disc-lr-scale", type=float, default=5.0)
    p.add_argument("--disc-width", type=int, default=32)
    p.add_argument("--disc-layers", type=int, default=4)
    p.add_argument("--name", default="discover_vessels", help="results file name (without suffix)")
    p.add_argument("--shift", type=float, default=0.0, help="LD option shift: view b cyclically shifted by up to this fraction, so the network cannot draw cluster 0 by position alone (0 = off)")
    p.add_argument("--crop-size", type=int, nargs=2, default=None, help="train on patches of this size cut from the --image-size images (LD crop_size); predict on whole images. "
                   "With --image-size at the images' own size and --crop-scale around (crop/image)^2, the patches keep the native resolution")
    p.add_argument("--crop-scale", type=float, nargs=2, default=[0.3, 1.0], help="with --crop-size: min and max fraction of the image area a patch covers (LD crop_scale; the priors are cropped alike)")
    p.add_argument("--stage1-steps", type=int, default=0, help="LD stage-1 steps (0 = a fifth of --pretrain-steps)")
    p.add_argument("--checkpoint-every", type=int, default=200)
    p.add_argument("--lr-halve-every", type=int, default=0, help="halve the learning rate every N steps of each stage (0 = at the middle of stage 2); fixed, a run can be extended with a longer --pretrain-steps")
    p.add_argument("--curve-steps", type=int, nargs="*", default=[], help="also score the run when it has trained this many steps in all (stage 1 + 2; each above stage 1): the curve of Dice against steps")
    p.add_argument("--retina-size", type=int, default=0, help="resize skimage's retina (1411 px) to this side (0 = keep)")
    p.add_argument("--retina-rule", default="chosen", choices=["chosen", "threshold", "argmax", "prototype"], help="prediction rule shown for the real photograph (chosen: the rule with the best Dice on the training images)")
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help="smoke test: tiny data and model, 4 steps")
    p.add_argument("--results", default="benchmarks/results", help="output folder (quick runs write into --work instead)")
    args = p.parse_args(argv)
    if args.quick:
        args.data, args.pretrain_steps, args.image_size, args.batch_size = "synthetic-fundus:6:64x64", 4, [64, 64], 2
        args.encoder_channels, args.decoder_channels, args.grid, args.priors, args.disc_width, args.disc_layers = [4, 8, 8], [8, 4], 2, 8, 4, 2
        args.work += "_quick"
        args.retina_size = 256
        args.curve_steps = [3]  # exercises growing the run in segments
    args.prior_size = args.prior_size or images_own_size(args.data)
    torch.set_num_threads(min(8, usable_cpus()))
    t0 = time.time()

    from localdisc.data.sources import resolve_source
    from localdisc.tasks.discover import load_run_model, predict_maps, save_mask_overlay

    work = Path(args.work)
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device)
    # before anything is written: the result figures are tracked files, and would mark the checkout dirty
    prov = provenance(device, None if argv is None else ["benchmarks/discover_vessels.py", *argv])
    test = [s for s in resolve_source(args.data) if s.split == "test"]
    curve = []
    if args.run:
        run = Path(args.run)
    else:
        run = work / run_name(args)
        curve_file = run / "curve.json"  # points scored so far: a rerun (or a killed benchmark) does not retrain past them
        known = {c["steps"]: c for c in json.loads(curve_file.read_text())} if curve_file.is_file() else {}
        for steps in sorted(set(args.curve_steps) - {args.pretrain_steps}):
            if steps not in known:
                if trained_steps(run, args) > steps:
                    print(f"curve: {steps} steps: the run is already past them and no score was recorded; skipped", flush=True)
                    continue
                train_shape(args.data, run, args, steps)
                known[steps] = {"steps": steps, "scores": score_test(load_run_model(run, device), test)}
                curve_file.write_text(json.dumps(sorted(known.values(), key=lambda c: c["steps"]), indent=2))
            curve.append(known[steps])
            print(f"curve: {steps} steps: " + ", ".join(f"{m} Dice {r['dice']:.3f}" for m, r in curve[-1]["scores"].items()), flush=True)
        train_shape(args.data, run, args)
    model = load_run_model(run, device)
    summary = score_test(model, test)
    if curve:
        curve.append({"steps": args.pretrain_steps, "scores": summary})
    # the rule a user would pick with a few labeled images: the best Dice on the TRAIN images, then scored on test
    train_rules = score_test(model, [s for s in resolve_source(args.data) if s.split != "test"], baselines=False)
    chosen = max(train_rules, key=lambda m: train_rules[m]["dice"])
    summary["ld-shape, rule chosen on train"] = {**summary[chosen], "rule": chosen}

    # the real, unlabeled photograph
    from PIL import Image
    from scipy import ndimage
    from skimage import data as skdata

    retina = skdata.retina().astype(np.float32).transpose(2, 0, 1) / 255.0
    if args.retina_size:
        from localdisc.data.datasets import resize_image

        retina = resize_image(torch.from_numpy(retina), (args.retina_size,) * 2).numpy()
    rfov = ndimage.binary_erosion(ndimage.binary_fill_holes(retina[0] > 0.1), iterations=3)
    rimg = retina if model.channels == 3 else retina.mean(0, keepdims=True)
    rprob = predict_maps(model, rimg, "shape", chosen.split()[-1] if args.retina_rule == "chosen" else args.retina_rule)
    rbin = (rprob > 0.5) & rfov
    panels = {"ld-shape": rbin, **{k: v[0] for k, v in green_baselines(retina, rfov).items()}}
    out = work if args.quick else Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    tiles = [Image.fromarray((retina.transpose(1, 2, 0) * 255).astype(np.uint8))]
    for name, b in panels.items():
        path = work / f"retina_{name}.png"
        work.mkdir(parents=True, exist_ok=True)
        save_mask_overlay(retina, b, path)
        tiles.append(Image.open(path).convert("RGB"))
    w = 512
    tiles = [t.resize((w, w)) for t in tiles]
    fig = Image.new("RGB", (w * len(tiles), w))
    for i, t in enumerate(tiles):
        fig.paste(t, (i * w, 0))
    fig_path = out / f"{args.name}_retina.png"
    fig.save(fig_path)
    retina_frac = {k: float(v[rfov].mean()) for k, v in panels.items()}

    name = args.name
    result = {**prov, "wall_s": round(time.time() - t0, 1), "quick": args.quick, "run": str(run),
              "data": args.data, "num_test_images": len(test), "priors": f"{args.priors} simulated masks, kind {args.prior_kind}, simulated at {'x'.join(map(str, args.prior_size))}" + (f", n_roots={args.prior_roots}" if args.prior_kind == "vessels" else ""), "config": {k: v for k, v in vars(args).items() if k not in ("quick", "results")}, "test_scores_inside_fov": summary,
              "retina": {"figure": str(fig_path), "vessel_fraction_in_fov": retina_frac, "panels": ["image", *panels]},
              "curve": curve, "train_scores_inside_fov": train_rules, "rule_chosen_on_train": chosen}
    (out / f"{name}.json").write_text(json.dumps(result, indent=2))
    lines = ["# Shape-guided vessel discovery (no labels; simulated vessel priors)", "",
             f"Priors: {result['priors']} (never the fundus labels).",  "", *(f"- {line}" for line in provenance_markdown(prov, result["wall_s"])),
             f"- run: {run}; data {args.data}, {len(test)} test images; scores inside the FOV",
             "", "| method | Dice | IoU | accuracy | AUC |", "|---|---|---|---|---|"]
    for m, r in summary.items():
        label = f"**{m}** ({r['rule']}; train Dice " + ", ".join(f"{k.split()[-1]} {v['dice']:.3f}" for k, v in train_rules.items()) + ")" if "rule" in r else m
        lines.append(f"| {label} | {r['dice']:.3f} | {r['iou']:.3f} | {r['accuracy']:.3f} | {r['auc']:.3f} |")
    lines += ["", f"Real photograph `skimage.data.retina()` (unlabeled): {fig_path.name} (image | ld-shape | Otsu | Frangi); "
              "vessel fraction of the FOV: " + ", ".join(f"{k} {v:.3f}" for k, v in retina_frac.items())]
    if curve:
        save_curve_plot(curve, out / f"{name}_curve.png")
        lines += ["", f"Dice inside the FOV against pretraining steps ({name}_curve.png); each row is the same run, grown in segments:", "",
                  "| steps | ld-shape threshold | ld-shape argmax | ld-shape prototype | AUC (a_0) |", "|---|---|---|---|---|"]
        lines += [f"| {c['steps']} | " + " | ".join(f"{c['scores'][f'ld-shape {r}']['dice']:.3f}" for r in ("threshold", "argmax", "prototype")) + f" | {c['scores']['ld-shape threshold']['auc']:.3f} |" for c in curve]
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
