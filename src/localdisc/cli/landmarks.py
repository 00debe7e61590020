"""``localdisc landmarks``: one-shot landmark localization from ONE annotated support image (or a few).

    localdisc landmarks RUN --support IMAGE --points points.json --queries DATA --out DIR

Writes DIR/predictions.csv, DIR/predictions.json, DIR/metrics.json (when ground truth is
known: from --truth or from the data layout, e.g. synthetic-fundus) and DIR/overlays/*.png.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..data.records import Sample, load_sample_image
from ..data.sources import resolve_source, select_split
from ..errors import ConfigError, DataError
from ..report.annotated import save_landmark_figure
from ..runtime.outputs import check_not_inputs, data_inputs, prepare_output_folder
from ..tasks.discover import load_run_model, to_rgb
from ..tasks.landmarks import OneShotLocator, SupportEnsemble, radial_errors, summarize_errors
from ..utils import progress, safe_name
from .main import add_command


def register(sub) -> None:
    p = add_command(sub, "landmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", metavar="RUN", help="pretraining run folder (ld or ld-shape) providing pixel embeddings")
    p.add_argument("--support", required=True, nargs="+", help="the annotated support image(s): files, or sample ids of --queries; with several, each landmark is the median of the per-support answers")
    p.add_argument("--points", default=None, help="support landmarks: JSON {name: [row, col(, ...)]} or CSV name,row,col; with several supports a JSON {support id: {name: [row, col]}}; default: the supports' own landmarks (synthetic data)")
    p.add_argument("--queries", required=True, help="query images: folder, manifest CSV or layout spec (e.g. synthetic-fundus:20, cxr:/path)")
    p.add_argument("--truth", default=None, help="ground truth JSON {image_id: {name: [row, col]}} (or with a top-level 'landmarks' key); default: landmarks the layout provides")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace localdisc's earlier outputs in --out (files you put there stay)")
    p.add_argument("--sigma", type=float, nargs="+", default=[2.0, 4.0, 8.0], help="Gaussian widths (model-grid pixels) of center-sensitive pooling, averaged (default: 2 4 8)")
    p.add_argument("--search-radius", type=float, default=0.0, help="restrict each prediction to this fraction of the image size around the support's relative position (for roughly aligned scans, e.g. 0.25); 0 = search the whole image")
    p.add_argument("--align", choices=["none", "affine"], default="none", help="none: search around the support's relative position; affine: first carry the landmarks into each query with an affine map fitted to the matches of points all over the support (coarse), then search around those positions (fine); with --search-radius 0 the carried position is the answer (default: none)")
    p.add_argument("--anchor-stride", type=int, default=8, help="with --align affine: one anchor point every N model-grid pixels (default: 8)")
    p.add_argument("--anchor-radius", type=float, default=0.25, help="with --align affine: each anchor is matched within this fraction of the image size of its own place (default: 0.25)")
    p.add_argument("--spacing", type=float, nargs="*", default=None, help="mm per pixel (row col[ ...]) to also report errors in mm; default: the images' own spacing if known")
    p.add_argument("--split", choices=["train", "val", "test", "all"], default="all", help="use query samples of this split (plus those without one) (default: all)")
    p.add_argument("--max-images", type=int, default=0, help="use at most N query images (0 = all)")
    p.add_argument("--max-overlays", type=int, default=16, help="write overlay pictures for at most N queries (0 = none) (default: 16)")
    p.add_argument("--batch-size", type=int, default=4, help="query images per forward pass")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one) | cpu | cuda | cuda:N")
    p.set_defaults(func=run)


def read_points(path: str | Path) -> dict[str, tuple[float, ...]]:
    """JSON {name: [row, col]} or CSV with columns name,row,col[,...] (header optional)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise DataError(f"{p}: cannot read landmark file ({e.strerror})") from e
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
            points = {str(k): tuple(float(x) for x in v) for k, v in data.items()}
        else:
            rows = [r for r in csv.reader(text.splitlines()) if r and not r[0].startswith("#")]
            if rows and not _is_number(rows[0][1]):
                rows = rows[1:]
            points = {r[0].strip(): tuple(float(x) for x in r[1:] if x.strip()) for r in rows}
    except (ValueError, TypeError, IndexError, json.JSONDecodeError, AttributeError) as e:
        raise DataError(f"{p}: expected name -> (row, col) landmarks ({e})") from e
    if not points or len({len(v) for v in points.values()}) != 1 or len(next(iter(points.values()))) not in (2, 3):
        raise DataError(f"{p}: need at least one landmark, all with 2 (row, col) or 3 (z, row, col) coordinates")
    return points


def support_landmarks(path: str | None, support: Sample, num_supports: int) -> dict[str, tuple[float, ...]]:
    """The landmarks of one support: from --points (per support id when there are several), else its own."""
    if path and num_supports > 1:
        table = read_truth(path)
        if support.id not in table:
            raise DataError(f"{path}: no landmarks for support {support.id} (with several supports, --points maps each support id to its landmarks)")
        points = table[support.id]
    elif path:
        points = read_points(path)
    else:
        points = dict(support.landmarks or {})
    if not points:
        raise ConfigError(f"--points is required (support {support.id} has no landmarks of its own)")
    return points


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def read_truth(path: str | Path) -> dict[str, dict[str, tuple[float, ...]]]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: unreadable ground-truth JSON ({e})") from e
    data = data.get("landmarks", data)
    return {str(i): {str(k): tuple(map(float, v)) for k, v in d.items()} for i, d in data.items() if isinstance(d, dict)}


def draw_overlay(image: np.ndarray, pred: dict[str, np.ndarray], truth: dict[str, tuple] | None, path: Path,
                 support: tuple[np.ndarray, dict[str, tuple]] | None = None, title: str = "") -> None:
    """2D: the annotated support beside the query, every landmark named (report.annotated). 3D:
    predictions as red crosses, truth as green circles on the slice through the first prediction."""

    if image.ndim == 3 and support is not None:
        save_landmark_figure(support[0], support[1], image, pred, truth, path, title)
        return

    if image.ndim == 4:
        z = int(round(next(iter(pred.values()))[0]))
        image = image[:, int(np.clip(z, 0, image.shape[1] - 1))]
        pred = {k: v[1:] for k, v in pred.items()}
        truth = {k: v[1:] for k, v in (truth or {}).items()}
    im = Image.fromarray(to_rgb(image))
    d = ImageDraw.Draw(im)
    r = max(3, int(0.015 * max(im.size)))
    for name, (y, x) in pred.items():
        d.line([(x - r, y - r), (x + r, y + r)], fill=(255, 0, 0), width=max(1, r // 3))
        d.line([(x - r, y + r), (x + r, y - r)], fill=(255, 0, 0), width=max(1, r // 3))
        if truth and name in truth:
            ty, tx = truth[name]
            d.ellipse([tx - r, ty - r, tx + r, ty + r], outline=(0, 255, 0), width=max(1, r // 3))
    im.save(path)


def _support(spec: str, queries: list[Sample]) -> Sample:
    if Path(spec).is_file():
        return Sample(id=Path(spec).stem, image=spec)
    for s in queries:
        if s.id == spec:
            return s
    raise DataError(f"{spec}: support image not found (not a file, nor a sample id of --queries)")


def run(args: argparse.Namespace) -> int:
    model = load_run_model(args.run_dir, args.device)
    if not hasattr(model.method, "embed"):
        raise ConfigError(f"{args.run_dir}: method {type(model.method).__name__} has no pixel embeddings (use an LD run)")
    queries = select_split(resolve_source(args.queries), args.split)
    supports = [_support(spec, queries) for spec in args.support]
    support = supports[0]
    queries = [s for s in queries if s.image not in {x.image for x in supports}]
    check_not_inputs(args.out, (f for s in queries + supports for f in (s.image, s.mask, s.fov)))
    prepare_output_folder(args.out, [*data_inputs(args.queries), args.run_dir], args.overwrite, "landmarks")
    if args.max_images:
        queries = queries[: args.max_images]
    if not queries:
        raise DataError(f"{args.queries}: no query images besides the support")
    support_points = [support_landmarks(args.points, x, len(supports)) for x in supports]
    points = support_points[0]
    names = list(points)
    truth = read_truth(args.truth) if args.truth else {}

    def embed(x: torch.Tensor) -> torch.Tensor:
        return model.method.embed(x.to(model.device)).float().cpu()

    locators = []
    first_support = load_sample_image(support, model.channels)
    for sup, pts in zip(supports, support_points):
        if set(pts) != set(names):
            raise DataError(f"support {sup.id}: landmarks {sorted(pts)} differ from the first support's {sorted(names)}")
        sup_img = torch.from_numpy(load_sample_image(sup, model.channels))
        if sup_img.dim() - 1 != len(model.size):
            raise DataError(f"{sup.image}: {sup_img.dim() - 1}-D image, but the model was trained on {len(model.size)}-D inputs")
        loc = OneShotLocator(embed, model.size, args.sigma, args.batch_size, args.search_radius, args.align, args.anchor_stride, args.anchor_radius)
        locators.append(loc.fit(sup_img, np.array([pts[n] for n in names])))
    loc = SupportEnsemble(locators)

    out = Path(args.out)
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    axes = ["row", "col"] if len(model.size) == 2 else ["z", "row", "col"]
    rows, preds_json, errs, errs_mm = [], {}, {n: [] for n in names}, {n: [] for n in names}
    for i in progress(range(0, len(queries), args.batch_size), desc=f"landmarks ({len(queries)} images, {args.batch_size} per batch)"):
        chunk = queries[i : i + args.batch_size]
        images = [load_sample_image(s, model.channels) for s in chunk]
        for j, (s, img, pred) in enumerate(zip(chunk, images, loc.predict([torch.from_numpy(x) for x in images]))):
            t = truth.get(s.id) or (s.landmarks or {})
            spacing = args.spacing or s.spacing
            preds_json[s.id] = {}
            for k, n in enumerate(names):
                row = {"image_id": s.id, "landmark": n, **{a: round(float(v), 3) for a, v in zip(axes, pred.points[k])}, "score": round(float(pred.score[k]), 5), "margin": round(float(pred.margin[k]), 5)}
                preds_json[s.id][n] = {"point": [float(v) for v in pred.points[k]], "score": float(pred.score[k]), "margin": float(pred.margin[k])}
                if n in t:
                    e = float(radial_errors(pred.points[k], t[n]))
                    row.update({f"true_{a}": float(v) for a, v in zip(axes, t[n])}, error_px=round(e, 3))
                    errs[n].append(e)
                    if spacing:
                        em = float(radial_errors(pred.points[k], t[n], spacing))
                        row["error_mm"] = round(em, 3)
                        errs_mm[n].append(em)
                rows.append(row)
            if i + j < args.max_overlays:
                draw_overlay(img, {n: pred.points[k] for k, n in enumerate(names)}, t, out / "overlays" / f"{i + j:04d}_{safe_name(s.id)}.png",
                             (first_support, points), title=f"{s.id}: landmarks from support {support.id}")

    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with (out / "predictions.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    (out / "predictions.json").write_text(json.dumps({"support": support.image, "supports": [x.image for x in supports], "support_points": {x.id: p for x, p in zip(supports, support_points)}, "predictions": preds_json}, indent=1))
    metrics = {"run": str(args.run_dir), "support": support.image, "supports": [x.image for x in supports], "num_queries": len(queries), "sigmas": args.sigma, "search_radius": args.search_radius, "align": args.align, "model_size": list(model.size)}
    (out / "config.json").write_text(json.dumps({**vars(args), **metrics}, indent=2, default=str))  # the resolved settings, with or without truth
    all_e = [e for n in names for e in errs[n]]
    if all_e:
        metrics["overall"] = summarize_errors(all_e)
        metrics["per_landmark"] = {n: summarize_errors(errs[n]) for n in names}
        all_mm = [e for n in names for e in errs_mm[n]]
        if all_mm:
            metrics["overall_mm"] = summarize_errors(all_mm, unit="mm")
            metrics["per_landmark_mm"] = {n: summarize_errors(errs_mm[n], unit="mm") for n in names}
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        print(f"landmarks: {len(queries)} queries, MRE {metrics['overall']['mre']:.2f} px, within 4 px {metrics['overall']['sr@4px']:.1%}; results in {out}")
    else:
        print(f"landmarks: {len(queries)} queries (no ground truth, no metrics); predictions in {out}")
    return 0
