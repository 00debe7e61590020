"""How far is a prior set from the real structure? A discriminator's answer.

Shape-guided discovery (``ld-shape``) converges to the true structure only if the true masks
are indistinguishable from the priors to its discriminator D: otherwise the GAN's equilibrium
is not the structure, whatever the training length. This benchmark trains the ld-shape
discriminator (same architecture and learning rate) to tell each prior set ("real") from the
TRUE vessel masks of the target images ("fake"), both warped by the views' random geometry,
and reports D's patch accuracy at the end: 0.5 means D cannot tell them apart.

Prior sets: the generic branching trees (simulate:vessels, as in discover_vessels with
--prior-kind vessels), whole-fundus vasculature (simulate:retina) simulated at the training size
or at the images' own size and resized with them, and optionally folders of masks.
The true masks are used only here, to measure the gap; ld-shape itself never sees them.

    python benchmarks/prior_gap.py [--quick]

Writes benchmarks/results/prior_gap.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from localdisc.runtime.provenance import provenance, provenance_markdown

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _pretrain import images_own_size, usable_cpus  # noqa: E402


def target_masks(data: str, size: tuple[int, int]) -> torch.Tensor:
    """(N, 1, H, W) true masks of the TRAIN images of ``data`` (what ld-shape would train on)."""
    from localdisc.data.datasets import ImageDataset, stack_items
    from localdisc.data.sources import resolve_source

    samples = [s for s in resolve_source(data) if s.split == "train"]
    ds = ImageDataset(samples, size, None, with_masks=True)
    return (stack_items([ds[i] for i in range(len(ds))])["mask"] > 0).float().reshape(len(ds), 1, *size)


def prior_sets(args, size, native) -> dict[str, torch.Tensor]:
    """Each prior set resized to the training size as ld-shape does (nearest neighbour)."""
    from localdisc.methods.ld_shape import load_prior_masks

    sets = {
        f"simulate:vessels (n_roots={args.prior_roots}), at {_wxh(size)}": _simulated("vessels", args.priors, size, size, n_roots=args.prior_roots),
        f"simulate:vessels (defaults), at {_wxh(size)}": _simulated("vessels", args.priors, size, size),
        f"simulate:retina, at {_wxh(size)}": _simulated("retina", args.priors, size, size),
        f"simulate:retina, at the images' {_wxh(native)}, resized": _simulated("retina", args.priors, size, native),
    }
    for folder in args.folder:
        sets[folder] = load_prior_masks(folder, size)
    return sets


def _wxh(size) -> str:
    return "x".join(str(s) for s in size)


def _simulated(kind, n, size, sim_size, **knobs) -> torch.Tensor:
    """n masks simulated at ``sim_size``, resized to ``size`` like label masks (nearest)."""
    from localdisc.data.datasets import resize_labels
    from localdisc.data.shapes import simulate

    return torch.stack([resize_labels(torch.from_numpy((m > 0).astype("float32")), size) for m in simulate(kind, n, sim_size, seed=1, **knobs)])[:, None]


def discriminator_gap(real: torch.Tensor, fake: torch.Tensor, args, seed: int) -> dict[str, float]:
    """Train D on real (priors) vs fake (true masks); D's patch accuracy over the last steps."""
    from localdisc.methods import augment
    from localdisc.methods.ld_shape import ShapeLDConfig
    from localdisc.nets.discriminator import MaskDiscriminator

    torch.manual_seed(seed)
    cfg = ShapeLDConfig()
    disc = MaskDiscriminator(2, 1, cfg.disc_width, cfg.disc_layers, lr_scale=cfg.disc_lr_scale)
    opt = torch.optim.Adam(disc.parameters(), lr=args.lr)
    size = tuple(real.shape[2:])

    def views(x):
        theta = augment.random_affine(x.shape[0], 2, cfg.crop_scale, rotate_degrees=cfg.rotate_degrees, flip=cfg.flip)
        return augment.warp(x, augment.affine_grid(theta, size), padding_mode="zeros")

    accs, losses = [], []
    for step in range(args.steps):
        r = views(real[torch.randint(len(real), (args.batch,))])
        f = views(fake[torch.randint(len(fake), (args.batch,))])
        lr_, lf = disc(r), disc(f)
        loss = F.binary_cross_entropy_with_logits(lr_, torch.ones_like(lr_)) + F.binary_cross_entropy_with_logits(lf, torch.zeros_like(lf))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step >= args.steps - args.last:
            accs.append(0.5 * float((lr_ > 0).float().mean() + (lf < 0).float().mean()))
            losses.append(float(loss.detach()))
    return {"patch_accuracy": float(np.mean(accs)), "d_loss": float(np.mean(losses))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="synthetic-fundus:40:256x256", help="target images with vessel masks (train split)")
    p.add_argument("--image-size", type=int, nargs=2, default=[128, 128])
    p.add_argument("--priors", type=int, default=200, help="simulated masks per prior set")
    p.add_argument("--prior-roots", type=int, default=4, help="n_roots of the generic vessel trees (as discover_vessels)")
    p.add_argument("--folder", nargs="*", default=[], help="extra prior sets: folders of masks")
    p.add_argument("--steps", type=int, default=400, help="discriminator steps per prior set")
    p.add_argument("--last", type=int, default=50, help="average D's accuracy over this many final steps")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam lr (times the ld-shape disc_lr_scale, as in training)")
    p.add_argument("--seeds", type=int, default=2, help="repeat each measurement with this many seeds")
    p.add_argument("--quick", action="store_true", help="smoke test: 64x64, 8 priors, 20 steps")
    p.add_argument("--results", default="benchmarks/results")
    args = p.parse_args(argv)
    if args.quick:
        args.data, args.image_size, args.priors, args.steps, args.last, args.batch, args.seeds = "synthetic-fundus:6:64x64", [64, 64], 8, 20, 5, 4, 1
    torch.set_num_threads(min(8, usable_cpus()))
    t0 = time.time()
    size = tuple(args.image_size)
    truth = target_masks(args.data, size)
    native = tuple(images_own_size(args.data))
    sets = prior_sets(args, size, native)
    rows = {}
    for name, priors in sets.items():
        runs = [discriminator_gap(priors, truth, args, seed) for seed in range(args.seeds)]
        rows[name] = {"patch_accuracy": float(np.mean([r["patch_accuracy"] for r in runs])), "patch_accuracy_per_seed": [r["patch_accuracy"] for r in runs],
                      "d_loss": float(np.mean([r["d_loss"] for r in runs])), "foreground_fraction": float(priors.mean())}
        print(name, rows[name], flush=True)

    prov = provenance("cpu", None if argv is None else ["benchmarks/prior_gap.py", *argv])
    result = {**prov, "wall_s": round(time.time() - t0, 1), "quick": args.quick, "data": args.data, "image_size": list(size),
              "true_foreground_fraction": float(truth.mean()), "config": {k: v for k, v in vars(args).items() if k not in ("quick", "results")}, "prior_sets": rows}
    out = Path(args.results) if not args.quick else Path("benchmarks/_work/prior_gap_quick")
    out.mkdir(parents=True, exist_ok=True)
    (out / "prior_gap.json").write_text(json.dumps(result, indent=2))
    lines = ["# Prior gap: can the ld-shape discriminator tell the priors from the true masks?", "",
             *(f"- {line}" for line in provenance_markdown(prov, result["wall_s"])),
             f"- target: true vessel masks of the {args.data} train images at {size[0]}x{size[1]} (foreground {result['true_foreground_fraction']:.3f});"
             f" D trained {args.steps} steps, accuracy averaged over the last {args.last}, {args.seeds} seed(s)",
             "- 0.5 = indistinguishable (the true vessels are an equilibrium of the shape-guided GAN); near 1 = the priors steer away from them",
             "", "| prior set | foreground | D patch accuracy | D loss |", "|---|---:|---:|---:|"]
    lines += [f"| {n} | {r['foreground_fraction']:.3f} | {r['patch_accuracy']:.2f} | {r['d_loss']:.3f} |" for n, r in rows.items()]
    (out / "prior_gap.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
