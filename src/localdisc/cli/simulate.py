"""``localdisc simulate-shapes``: write a prior set of simulated masks (vessel trees, fundus
vasculature, lung fields, optic discs, 3D tubes) as 0/255 PNGs (NIfTI for tubes3d), e.g. for shape-guided discovery."""

from __future__ import annotations

import argparse
import math
import time

from ..data import files
from ..data.simulate import KINDS, write_priors
from ..errors import ConfigError
from ..runtime.outputs import prepare_output_folder
from .main import HelpFormatter, add_command

# option -> (keyword of the shape function, kinds it applies to)
_KNOBS = {
    "n_roots": ("n_roots", ("vessels", "tubes3d")),
    "depth": ("depth", ("vessels", "tubes3d")),
    "branch_angle": ("branch_angle", ("vessels", "tubes3d")),
    "thickness": ("thickness", ("vessels", "tubes3d")),
    "taper": ("taper", ("vessels", "tubes3d")),
    "tortuosity": ("tortuosity", ("vessels", "tubes3d")),
    "length": ("length", ("vessels", "tubes3d")),
    "curvature": ("curvature", ("vessels", "tubes3d")),
    "spacing": ("spacing", ("tubes3d",)),
    "radius": ("radius", ("disc",)),
    "irregularity": ("irregularity", ("disc", "lungs")),
}


def register(sub) -> None:
    p = add_command(sub, "simulate-shapes",
        description="Simulate random anatomical masks and write them as 0/255 PNG files (tubes3d: .nii.gz). "
        "Mask i depends only on (--seed, i). Knob options left out keep the simulator's defaults. "
        "Kinds: vessels (generic branching trees over the whole image), retina (the vessel arcades of a whole "
        "fundus photograph: from the optic disc, around the fovea, inside a circular field of view; use it as the "
        "prior for fundus images, see benchmarks/prior_gap.py), lungs, disc, tubes3d.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--kind", choices=KINDS, default="vessels", help="shape family to simulate")
    p.add_argument("--num-images", type=int, default=200, help="number of masks to write")
    p.add_argument("--image-size", type=int, nargs="+", default=[256, 256], metavar="N", help="mask size: H W (or D H W for tubes3d)")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--overwrite", action="store_true", help="replace localdisc's earlier masks in --out (files you put there stay)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    g = p.add_argument_group("shape knobs (default: the simulator's own)")
    g.add_argument("--n-roots", type=int, default=None, help="vessels/tubes3d: trees starting from the shared root")
    g.add_argument("--depth", type=int, default=None, help="vessels/tubes3d: bifurcation levels per tree")
    g.add_argument("--branch-angle", type=float, nargs=2, default=None, metavar=("MIN", "MAX"), help="vessels/tubes3d: branching angle range in degrees")
    g.add_argument("--thickness", type=float, nargs=2, default=None, metavar=("MIN", "MAX"), help="vessels/tubes3d: vessel diameter range in pixels (thickest at the root)")
    g.add_argument("--taper", type=float, default=None, help="vessels/tubes3d: thickness ratio per bifurcation level (0-1)")
    g.add_argument("--tortuosity", type=float, default=None, help="vessels/tubes3d: strength of the random wiggle (0 = straight)")
    g.add_argument("--length", type=float, default=None, help="vessels/tubes3d: root branch length as a fraction of the image size")
    g.add_argument("--curvature", type=float, default=None, help="vessels/tubes3d: steady bending in radians per pixel")
    g.add_argument("--spacing", type=float, nargs=3, default=None, help="tubes3d: voxel spacing D H W (mm) written to the NIfTI header")
    g.add_argument("--radius", type=float, nargs=2, default=None, metavar=("MIN", "MAX"), help="disc: mean radius range as a fraction of the smaller side")
    g.add_argument("--irregularity", type=float, default=None, help="disc/lungs: amplitude of outline irregularity")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    want = 3 if args.kind == "tubes3d" else 2
    if len(args.image_size) != want:
        raise ConfigError(f"--image-size needs {want} numbers for --kind {args.kind}, got {len(args.image_size)}")
    if not 1 <= args.num_images <= 100_000:
        raise ConfigError(f"--num-images must be between 1 and 100000, got {args.num_images}")

    limit = files.MAX_VOXELS if want == 3 else files.MAX_PIXELS
    if any(s < 8 for s in args.image_size) or math.prod(args.image_size) > limit:
        raise ConfigError(f"--image-size {' '.join(map(str, args.image_size))}: each side must be at least 8 and the image at most {limit} "
                          f"{'voxels' if want == 3 else 'pixels'} (--max-{'voxels' if want == 3 else 'pixels'})")
    knobs = {}
    for opt, (kw, kinds) in _KNOBS.items():
        val = getattr(args, opt)
        if val is None:
            continue
        if args.kind not in kinds:
            raise ConfigError(f"--{opt.replace('_', '-')} does not apply to --kind {args.kind} (only to {', '.join(kinds)})")
        knobs[kw] = tuple(val) if isinstance(val, list) else val
    prepare_output_folder(args.out, (), args.overwrite, "simulate-shapes")
    t0 = time.perf_counter()
    paths = write_priors(args.kind, args.num_images, tuple(args.image_size), args.out, args.seed, **knobs)
    print(f"wrote {len(paths)} {args.kind} masks to {args.out} in {time.perf_counter() - t0:.1f} s")
    return 0
