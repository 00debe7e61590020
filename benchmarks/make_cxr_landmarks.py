"""Derive landmark ground truth from the CXR structure outlines (no manual landmark labels exist).

Per image, from each structure's FULL outline (not the overlap-resolved class map):
left/right lung centroid, apex (topmost row) and lowest point; cardiomediastinum ("heart")
centroid (localdisc.tasks.landmark_bench.cxr_landmarks). Coordinates are (row, col) in original pixels.

    python benchmarks/make_cxr_landmarks.py [--data cxr:/work/shared/data/CXR] [--out FILE] [--quick]

Output JSON: {command, commit, machine, date, "data", "definition", "sizes": {id: [H, W]},
"splits": {id: split}, "landmarks": {id: {name: [row, col]}}} (``localdisc landmarks --truth FILE``
and ``benchmarks/landmarks.py --truth FILE`` read it), and a Markdown summary beside it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from localdisc.runtime.provenance import write_result
from localdisc.tasks.landmark_bench import CXR_DEFINITION, cxr_landmarks


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="cxr:/work/shared/data/CXR", help="CXR layout spec")
    p.add_argument("--out", default="benchmarks/results/cxr_landmarks_truth.json", help="output JSON (a .md of the same name is written beside it)")
    p.add_argument("--quick", action="store_true", help="first 5 images only")
    args = p.parse_args(argv)
    t0 = time.time()
    truth = cxr_landmarks(args.data, limit=5 if args.quick else 0)
    names = sorted({n for marks in truth["landmarks"].values() for n in marks})
    splits = {s: sum(v == s for v in truth["splits"].values()) for s in sorted(set(truth["splits"].values()), key=str)}
    lines = ["# Chest X-ray landmarks derived from the structure outlines", f"- data {args.data}: {len(truth['landmarks'])} images ({', '.join(f'{n} {s}' for s, n in splits.items())})",
             f"- definition: {CXR_DEFINITION}", f"- landmarks: {', '.join(names)}"]
    out = Path(args.out)
    path, _ = write_result(out.parent, out.stem, {"data": args.data, "definition": CXR_DEFINITION, **truth}, lines,
                           argv=None if argv is None else ["benchmarks/make_cxr_landmarks.py", *argv], wall_s=time.time() - t0)
    print(f"wrote landmarks of {len(truth['landmarks'])} images to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
