"""Shape-guided lung discovery on real chest X-rays, without labels: ld-shape with SIMULATED lung priors.

1. LD stage 1 on the CXR TRAIN images (or ``--stage1 RUN``), then two stage-2 runs initialized
   from it that differ ONLY in the shape prior's weight: ``ld-shape`` (simulated lung fields from
   the shape simulator, kind ``lungs``, guide cluster 0; adversarial weight ``--adv-weight``) and
   a control with adversarial weight 0 (plain LD with K=8: cluster 0 is whatever cluster it
   becomes). Neither ever sees a label. Stage 2 keeps the rot90/flip of view b (``--dihedral``):
   without it the generator paints the same lung-shaped band at the same place in every image.
2. TEST split: Dice of the guided structure against the union of the radiologists' left and
   right lung outlines, per image, at ``--eval-size``. Rows:
   - ld-shape with each prediction rule (argmax_k a_k = 0; a_0 > 0.5; prototype rule);
   - the control's cluster 0 (what the same training gives without the prior);
   - the control's best single cluster, chosen WITH the test labels (an oracle: the most plain
     clustering could offer; Hungarian matching with one structure);
   - Otsu on the grey image (lungs hold air and are dark), an unsupervised intensity baseline;
   - everything: the whole image called lung (Dice 2f/(1+f) for lung fraction f), the floor
     any method must clear.
3. Overlays of the first test images (yellow: hit, red: false positive, green: missed).

    python benchmarks/discover_lungs.py [--quick]

Writes benchmarks/results/discover_lungs.{json,md} and discover_lungs_overlays.png.
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
from _pretrain import add_pretrain_args, pretrain_config, usable_cpus  # noqa: E402

LUNG_NAMES = ("Left Lung", "Right Lung")


def train_runs(args, work: Path) -> dict[str, Path]:
    """{"stage1", "ld-shape", "control"} run folders; finished runs are reused, killed ones resume."""
    from localdisc.methods import get_method
    from localdisc.methods.ld import LDConfig
    from localdisc.methods.ld_shape import ShapeLDConfig

    stage1 = Path(args.stage1) if args.stage1 else work / "stage1"
    if not (stage1 / "model.safetensors").is_file():  # chest X-rays have one orientation: no flips
        cfg = pretrain_config(args, args.data, stage1, args.stage1_steps, in_channels=1, seed=args.seed, resume=True, overwrite=False)
        get_method("ld").run_schedule(cfg, LDConfig(stage="1", grid=args.grid, flip=False, dihedral=False))
    runs = {"stage1": stage1}
    for name, adv in (("ld-shape", args.adv_weight), ("control", 0.0)):
        tag = (f"_adv{adv:g}" if adv else "") + f"_d{args.disc_layers}" + ("_dihedral" if args.dihedral else "")
        out = work / f"{name}{tag}_{args.pretrain_steps}steps_s{args.seed}"
        runs[name] = out
        if (out / "model.safetensors").is_file():
            continue
        cfg = pretrain_config(args, args.data, out, method="ld-shape", in_channels=1, seed=args.seed, init=str(stage1), resume=True, overwrite=False)
        mcfg = ShapeLDConfig(stage="2", prior_masks=f"simulate:lungs:{args.priors}", adv_weight=adv, disc_layers=args.disc_layers, prior_seed=1,
                             grid=args.grid, flip=False, dihedral=bool(args.dihedral))
        get_method("ld-shape").run_schedule(cfg, mcfg)
    return runs


def lung_union(sample, size) -> np.ndarray:
    """(H, W) bool: left or right lung, at ``size`` (nearest neighbour)."""
    from localdisc.data.datasets import resize_labels
    from localdisc.data.records import load_sample_mask

    mask = load_sample_mask(sample)
    names = list(sample.extra.get("class_names") or [])
    labels = [names.index(n) for n in LUNG_NAMES if n in names]
    if not labels:
        raise SystemExit(f"{sample.id}: no {' / '.join(LUNG_NAMES)} labels (class names {names})")
    return resize_labels(torch.from_numpy(np.isin(mask, labels)).float(), size).numpy() > 0.5


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="cxr:/work/shared/data/CXR")
    p.add_argument("--work", default="benchmarks/_work/discover_lungs")
    p.add_argument("--stage1", default=None, help="an LD stage-1 run to start both stage-2 runs from (default: train one into --work)")
    p.add_argument("--stage1-steps", type=int, default=160)
    add_pretrain_args(p)
    p.add_argument("--priors", type=int, default=200, help="simulated lung-field prior masks")
    p.add_argument("--adv-weight", type=float, default=1.0)
    p.add_argument("--disc-layers", type=int, default=5, help="discriminator stride-2 layers: 4 judges ~46 px patches at 128^2, 5 sees a lung field whole")
    p.add_argument("--dihedral", type=int, default=1, choices=[0, 1], help="stage 2: view b gets a random rot90/flip, undone on its maps (1) or not (0). "
                   "Without it the generator can paint one lung-shaped pattern at a fixed place in every image; with it, that pattern comes back rotated from view b and D rejects it")
    p.add_argument("--eval-size", type=int, nargs=2, default=[256, 256])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help="smoke test: tiny model, 4 steps, 4 test images")
    p.add_argument("--results", default="benchmarks/results", help="output folder (quick runs write into --work instead)")
    args = p.parse_args(argv)
    max_test = 0
    if args.quick:
        args.pretrain_steps, args.stage1_steps, args.image_size, args.batch_size, args.priors, max_test = 4, 2, [64, 64], 2, 4, 4
        args.encoder_channels, args.decoder_channels, args.grid = [4, 8, 8], [8, 4], 2
        args.work += "_quick"
    torch.set_num_threads(min(8, usable_cpus()))
    t0 = time.time()

    from skimage.filters import threshold_otsu

    from localdisc.data.datasets import resize_image
    from localdisc.data.records import load_sample_image
    from localdisc.data.sources import resolve_source
    from localdisc.tasks.discover import binary_scores, load_run_model, save_mask_overlay

    work = Path(args.work)
    args.device = "cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device)
    # before anything is written: the result figure is a tracked file, and would mark the checkout dirty
    prov = provenance(args.device, None if argv is None else ["benchmarks/discover_lungs.py", *argv])
    runs = train_runs(args, work)
    shape, control = load_run_model(runs["ld-shape"], args.device), load_run_model(runs["control"], args.device)
    K = control.method.cfg.num_clusters
    test = [s for s in resolve_source(args.data) if s.split == "test"][: max_test or None]
    ev = tuple(args.eval_size)
    rules = ("argmax", "threshold", "prototype")
    dice: dict[str, list[float]] = {**{f"ld-shape, {r}": [] for r in rules}, "control, cluster 0": [], "otsu": [], "everything": []}
    control_k = np.zeros((len(test), K))
    panels = []
    for i, s in enumerate(test):
        truth = lung_union(s, ev)
        img = resize_image(torch.from_numpy(load_sample_image(s, 1)).float(), ev)
        preds = {}
        x = resize_image(img, shape.size)[None].to(shape.device)
        with torch.no_grad():
            for r in rules:
                prob = shape.method.structure_probability(x, rule=r)[:, None]
                preds[f"ld-shape, {r}"] = torch.nn.functional.interpolate(prob.float().cpu(), size=ev, mode="bilinear")[0, 0].numpy() > 0.5
            a = control.method.assign(resize_image(img, control.size)[None].to(control.device)).float().cpu()
            clusters = torch.nn.functional.interpolate(a, size=ev, mode="bilinear")[0].argmax(0).numpy()
        preds["control, cluster 0"] = clusters == 0
        grey = img[0].numpy()
        preds["otsu"] = grey < threshold_otsu(grey)
        preds["everything"] = np.ones_like(truth)
        for name, pred in preds.items():
            dice[name].append(binary_scores(pred, truth)["dice"])
        control_k[i] = [binary_scores(clusters == k, truth)["dice"] for k in range(K)]
        if i < 4:
            panels.append((grey, truth, preds["ld-shape, argmax"], preds["otsu"]))
    best = int(control_k.mean(0).argmax())
    dice[f"control, best cluster ({best}) chosen with the labels"] = list(control_k[:, best])
    summary = {m: {"dice_mean": float(np.mean(v)), "dice_sd": float(np.std(v))} for m, v in dice.items()}

    out = work if args.quick else Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    fig_path = out / "discover_lungs_overlays.png"
    save_overlay_grid(panels, work / "overlays", fig_path, save_mask_overlay)

    result = {**prov, "wall_s": round(time.time() - t0, 1), "quick": args.quick, "runs": {k: str(v) for k, v in runs.items()},
              "data": args.data, "num_test_images": len(test), "priors": f"{args.priors} simulated lung fields (kind lungs)",
              "config": {k: v for k, v in vars(args).items() if k not in ("quick", "results")}, "dice_lungs_test": summary,
              "control_dice_per_cluster": [float(x) for x in control_k.mean(0)], "figure": str(fig_path)}
    (out / "discover_lungs.json").write_text(json.dumps(result, indent=2))
    lines = ["# Shape-guided lung discovery on chest X-rays (no labels; simulated lung priors)", "",
             *(f"- {line}" for line in provenance_markdown(prov, result["wall_s"])),
             f"- data {args.data}: {len(test)} test images; truth = left + right lung outlines; Dice at {ev[0]}x{ev[1]}",
             f"- runs: {', '.join(f'{k} {v}' for k, v in runs.items())}; priors: {result['priors']}", "",
             "| method | Dice (mean ± SD over images) |", "|---|---|"]
    lines += [f"| {m} | {r['dice_mean']:.3f} ± {r['dice_sd']:.3f} |" for m, r in summary.items()]
    lines += ["", f"Control, Dice of each cluster: {', '.join(f'{x:.2f}' for x in control_k.mean(0))}",
              f"Overlays: {fig_path.name} (image | truth | ld-shape argmax | Otsu; yellow hit, red false positive, green missed)"]
    (out / "discover_lungs.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def save_overlay_grid(panels, tmp: Path, fig_path: Path, save_mask_overlay, side: int = 256) -> None:
    """One row per image, titled columns: grey image | truth | ld-shape | Otsu (overlays with the truth)."""
    from PIL import Image

    from localdisc.report.embeddings import titled_grid

    tmp.mkdir(parents=True, exist_ok=True)
    columns: list[list[np.ndarray]] = [[], [], [], []]
    for row, (grey, truth, shape_pred, otsu) in enumerate(panels):
        tiles = [Image.fromarray((np.clip(grey, 0, 1) * 255).astype(np.uint8)).convert("RGB")]
        for j, pred in enumerate((truth, shape_pred, otsu)):
            path = tmp / f"{row}_{j}.png"
            save_mask_overlay(grey[None], pred, path, None if j == 0 else truth)
            tiles.append(Image.open(path).convert("RGB"))
        for col, t in enumerate(tiles):
            columns[col].append(np.asarray(t.resize((side, side))))
    titles = ["chest X-ray", "truth (lungs)", "ld-shape, argmax", "Otsu threshold"]
    Image.fromarray(titled_grid([np.stack(c) for c in columns], titles)).save(fig_path)


if __name__ == "__main__":
    sys.exit(main())
