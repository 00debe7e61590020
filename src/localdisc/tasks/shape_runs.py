"""Shape-guided discovery runs of the benchmarks: ld-shape with SIMULATED priors, never labels.

- vessels (benchmarks/discover_vessels.py): one ld-shape run (LD stage 1, then stage 2 with the
  adversarial prior on cluster 0) grown in segments: :func:`train_shape` trains a run up to S
  steps in all; stage 1's length and the learning-rate halving are fixed by the options, not by
  S, so a run grown to S in segments (the Dice-vs-steps curve) is the run a single S-step call
  would have trained. A run folder trained with other method settings is refused, not
  continued (:func:`check_same_settings`): the folder's name does not carry every setting.
  :func:`grow_with_curve` scores the run at each curve point on the way, once: the points are
  kept in RUN/curve.json, so a rerun (or a killed benchmark) does not retrain past them.
- lungs (benchmarks/discover_lungs.py): :func:`train_lung_runs` trains LD stage 1, then two
  stage-2 runs from it that differ only in the prior's weight (ld-shape, and a control at 0).

The functions take the scripts' parsed options (argparse.Namespace): :func:`add_shape_run_args`
defines the vessel script's, :func:`~localdisc.tasks.bench_runs.add_pretrain_args` the run size.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from ..config import to_dict
from ..data.simulate import write_priors
from ..methods.ld import LDConfig
from ..methods.ld_shape import ShapeLDConfig
from ..runtime.checkpoint import atomic_write_text, latest_checkpoint
from ..train.pretrain import run_pretraining
from .bench_runs import pretrain_config, pretrain_once


def add_shape_run_args(p: argparse.ArgumentParser) -> None:
    """The ld-shape options of the vessel benchmark (priors, discriminator, views, schedule)."""
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
    p.add_argument("--shift", type=float, default=0.0, help="LD option shift: view b cyclically shifted by up to this fraction, so the network cannot draw cluster 0 by position alone (0 = off)")
    p.add_argument("--crop-size", type=int, nargs=2, default=None, help="train on patches of this size cut from the --image-size images (LD crop_size); predict on whole images. "
                   "With --image-size at the images' own size and --crop-scale around (crop/image)^2, the patches keep the native resolution")
    p.add_argument("--crop-scale", type=float, nargs=2, default=[0.3, 1.0], help="with --crop-size: min and max fraction of the image area a patch covers (LD crop_scale; the priors are cropped alike)")
    p.add_argument("--stage1-steps", type=int, default=0, help="LD stage-1 steps (0 = a fifth of --pretrain-steps)")
    p.add_argument("--checkpoint-every", type=int, default=200)
    p.add_argument("--lr-halve-every", type=int, default=0, help="halve the learning rate every N steps of each stage (0 = at the middle of stage 2); fixed, a run can be extended with a longer --pretrain-steps")


def prior_tag(args) -> str:
    """KIND_HxW: names the prior folder and the run trained with it."""
    return f"{args.prior_kind}_{'x'.join(map(str, args.prior_size))}"


def describe_priors(args) -> str:
    """One line saying what the priors are, for the result files."""
    return (f"{args.priors} simulated masks, kind {args.prior_kind}, simulated at {'x'.join(map(str, args.prior_size))}"
            + (f", n_roots={args.prior_roots}" if args.prior_kind == "vessels" else ""))


def prior_folder(folder: Path, args) -> str:
    """Simulated vessel masks written as PNGs (what a user gets from `localdisc simulate-shapes`)
    into ``folder``_KIND_HxW, once. ``retina``: whole-fundus vasculature (arcades from a disc,
    circular FOV); ``vessels``: generic branching trees (``--prior-roots`` each). Simulated at
    ``--prior-size``, then resized with the images by ld-shape, so both see the same resampling."""
    folder = folder.with_name(f"{folder.name}_{prior_tag(args)}")
    if not any(folder.glob("*.png")):
        knobs = {"n_roots": args.prior_roots} if args.prior_kind == "vessels" else {}
        write_priors(args.prior_kind, args.priors, tuple(args.prior_size), folder, seed=1, **knobs)
    return str(folder)


def run_name(args) -> str:
    """The run folder's name: the prior tag plus the options that change what is learned."""
    name = f"ld_shape_{prior_tag(args)}" + (f"_shift{args.shift:g}" if args.shift else "")
    if args.crop_size:
        name += f"_crop{'x'.join(map(str, args.crop_size))}_s{args.crop_scale[0]:g}-{args.crop_scale[1]:g}"
    return name


def stage1_steps(args) -> int:
    return args.stage1_steps or max(1, args.pretrain_steps // 5)


def trained_steps(out: Path, args) -> int:
    """Steps (stage 1 + 2) of the finished weights in ``out``; 0 when it has none yet."""
    done = latest_checkpoint(out) if (out / "model.safetensors").is_file() else None
    return 0 if done is None else stage1_steps(args) + int(json.loads((done / "meta.json").read_text())["step"])


def check_same_settings(out: Path, mcfg) -> None:
    """Refuse (SystemExit) to continue the run in ``out`` if its recorded method settings differ from ``mcfg``."""
    if not (out / "config.yaml").is_file():
        return
    saved = (yaml.safe_load((out / "config.yaml").read_text()) or {}).get("method_config", {})
    wanted = to_dict(mcfg)
    norm = lambda v: list(v) if isinstance(v, (list, tuple)) else v  # noqa: E731  (YAML gives lists for tuples)
    differ = [k for k in wanted if k != "stage" and k in saved and norm(saved[k]) != norm(wanted[k])]
    if differ:
        raise SystemExit(f"{out}: this run was trained with other settings ({', '.join(f'{k}: {saved[k]} != {wanted[k]}' for k in differ)}); use another --work")


def train_shape(data: str, out: Path, args, steps: int | None = None) -> Path:
    """Train (or continue) the ld-shape run in ``out`` up to ``steps`` in all (default --pretrain-steps)."""
    steps = steps or args.pretrain_steps
    n1 = stage1_steps(args)
    if trained_steps(out, args) >= steps:
        return out
    cfg = pretrain_config(args, data, out, steps=steps, method="ld-shape", resume=True, overwrite=False,  # a killed benchmark continues
                          lr_halve_every=args.lr_halve_every or max(1, (args.pretrain_steps - n1) // 2), checkpoint_every=args.checkpoint_every)
    crop = dict(crop_size=tuple(args.crop_size), crop_scale=tuple(args.crop_scale)) if args.crop_size else {}
    mcfg = ShapeLDConfig(stage="both", stage1_steps=n1, grid=args.grid, num_clusters=args.num_clusters, prior_masks=prior_folder(out.parent / "priors", args),
                         adv_weight=args.adv_weight, disc_width=args.disc_width, disc_layers=args.disc_layers, disc_input=args.disc_input,
                         disc_lr_scale=args.disc_lr_scale, shift=args.shift, **crop)
    check_same_settings(out, mcfg)
    run_pretraining(cfg, mcfg)
    return out


def grow_with_curve(data: str, run: Path, args, curve_steps: Sequence[int], score: Callable[[Path], dict[str, Any]]) -> list[dict[str, Any]]:
    """Train ``run`` through each of ``curve_steps`` (totals; --pretrain-steps itself excluded),
    scoring it there with ``score(run)``, then to --pretrain-steps. Returns [{steps, scores}] of
    the points reached; a point the run is already past without a recorded score is skipped."""
    curve_file = run / "curve.json"
    known = {c["steps"]: c for c in json.loads(curve_file.read_text())} if curve_file.is_file() else {}
    curve = []
    for steps in sorted(set(curve_steps) - {args.pretrain_steps}):
        if steps not in known:
            if trained_steps(run, args) > steps:
                print(f"curve: {steps} steps: the run is already past them and no score was recorded; skipped", flush=True)
                continue
            train_shape(data, run, args, steps)
            known[steps] = {"steps": steps, "scores": score(run)}
            atomic_write_text(curve_file, json.dumps(sorted(known.values(), key=lambda c: c["steps"]), indent=2))
        curve.append(known[steps])
        print(f"curve: {steps} steps: " + ", ".join(f"{m} Dice {r['dice']:.3f}" for m, r in curve[-1]["scores"].items()), flush=True)
    train_shape(data, run, args)
    return curve


def train_lung_runs(args, work: Path) -> dict[str, Path]:
    """{"stage1", "ld-shape", "control"} run folders of the lung benchmark; finished runs are
    reused, killed ones resume. Chest X-rays have one orientation: no flips in either stage."""
    stage1 = Path(args.stage1) if args.stage1 else work / "stage1"
    cfg = pretrain_config(args, args.data, stage1, args.stage1_steps, in_channels=1, seed=args.seed, resume=True, overwrite=False)
    pretrain_once(cfg, LDConfig(stage="1", grid=args.grid, flip=False, dihedral=False))
    runs = {"stage1": stage1}
    for name, adv in (("ld-shape", args.adv_weight), ("control", 0.0)):
        tag = (f"_adv{adv:g}" if adv else "") + f"_d{args.disc_layers}" + ("_dihedral" if args.dihedral else "")
        out = runs[name] = work / f"{name}{tag}_{args.pretrain_steps}steps_s{args.seed}"
        cfg = pretrain_config(args, args.data, out, method="ld-shape", in_channels=1, seed=args.seed, init=str(stage1), resume=True, overwrite=False)
        pretrain_once(cfg, ShapeLDConfig(stage="2", prior_masks=f"simulate:lungs:{args.priors}", adv_weight=adv, disc_layers=args.disc_layers, prior_seed=1,
                                         grid=args.grid, flip=False, dihedral=bool(args.dihedral)))
    return runs
