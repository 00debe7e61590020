"""Derive landmark ground truth from the CXR structure outlines (no manual landmark labels exist).

Per image, from each structure's FULL outline (not the overlap-resolved class map):
left/right lung centroid, apex (topmost row) and lowest point; cardiomediastinum ("heart")
centroid. Coordinates are (row, col) in original pixels.

    python benchmarks/make_cxr_landmarks.py [--data cxr:/work/shared/data/CXR] [--out FILE] [--quick]

Output JSON: {"meta": {...}, "sizes": {id: [H, W]}, "splits": {id: split}, "landmarks": {id: {name: [row, col]}}}
(``localdisc landmarks --truth FILE`` reads it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from localdisc.data.records import load_sample_mask
from localdisc.data.sources import resolve_source
from localdisc.runtime.provenance import provenance
from localdisc.tasks.landmarks import mask_landmarks

STRUCTURES = {"Left Lung": "left_lung", "Right Lung": "right_lung", "Cardiomediastinum": "heart"}
KEEP = {"left_lung": ("centroid", "apex", "lowest"), "right_lung": ("centroid", "apex", "lowest"), "heart": ("centroid",)}


def cxr_landmarks(data: str, limit: int = 0) -> dict:
    out: dict = {"sizes": {}, "splits": {}, "landmarks": {}}
    for structure, short in STRUCTURES.items():
        samples = resolve_source(data, structures=structure)
        if limit:
            samples = samples[:limit]
        for s in samples:
            mask = load_sample_mask(s) == 1
            lm = mask_landmarks(mask)
            out["sizes"][s.id] = list(mask.shape)
            out["splits"][s.id] = s.split
            entry = out["landmarks"].setdefault(s.id, {})
            for kind in KEEP[short]:
                if kind in lm:
                    entry[f"{short}_{kind}"] = [round(v, 2) for v in lm[kind]]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="cxr:/work/shared/data/CXR", help="CXR layout spec")
    p.add_argument("--out", default="benchmarks/results/cxr_landmarks_truth.json", help="output JSON")
    p.add_argument("--quick", action="store_true", help="first 5 images only")
    args = p.parse_args(argv)
    t0 = time.time()
    result = cxr_landmarks(args.data, limit=5 if args.quick else 0)
    prov = provenance("cpu", None if argv is None else ["benchmarks/make_cxr_landmarks.py", *argv])
    result["meta"] = {**prov, "wall_s": round(time.time() - t0, 1), "data": args.data,
                      "definition": "centroid / topmost row (apex) / bottom row of each structure's full outline; (row, col) original pixels"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote landmarks of {len(result['landmarks'])} images to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
