"""One-shot landmarks scored against naive baselines (benchmarks/landmarks.py, make_cxr_landmarks.py).

Ground truth: the data layout's own landmarks (synthetic fundus: optic disc and fovea centres
known by construction), a JSON file, or, for chest X-rays, :func:`cxr_landmarks` from the
radiologists' outlines: each lung's centroid, apex (topmost row) and lowest point and the
cardiomediastinum ("heart") centroid of each structure's FULL outline (not the overlap-resolved
class map), (row, col) in original pixels.

:func:`one_shot_errors` locates every landmark of the annotated support image(s) in each query
with LD (whole image; a search window of R times the image size; optionally coarse to fine via
an affine map from anchor matches), by copying the support's relative position, and by NCC on
the raw intensity (tasks/baselines.py). With several supports each method answers the
coordinate-wise median of the per-support answers. Errors are radial distances on the common
``grid`` (every image resized to it, as the model sees it), in original pixels, and in
mm-equivalent (each image's longer side taken to span ``field_mm``).

:func:`against_copy` compares a method with copying per query image (its landmarks' errors
averaged: the image is the unit), :func:`localdisc.evaluation.stats.paired_difference`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..data.datasets import resize_image
from ..data.records import Sample, load_sample_image, load_sample_mask
from ..data.sources import resolve_source
from ..evaluation.stats import paired_difference
from .baselines import copy_landmarks, ncc_landmarks
from .landmarks import OneShotLocator, mask_landmarks, radial_errors, summarize_errors, to_model_coords

CXR_STRUCTURES = {"Left Lung": "left_lung", "Right Lung": "right_lung", "Cardiomediastinum": "heart"}
CXR_KEEP = {"left_lung": ("centroid", "apex", "lowest"), "right_lung": ("centroid", "apex", "lowest"), "heart": ("centroid",)}
CXR_DEFINITION = "centroid / topmost row (apex) / bottom row of each structure's full outline; (row, col) original pixels"


def cxr_landmarks(data: str, limit: int = 0) -> dict[str, Any]:
    """{"sizes": {id: [H, W]}, "splits": {id: split}, "landmarks": {id: {name: [row, col]}}} of a
    CXR layout (first ``limit`` images per structure when > 0)."""
    out: dict[str, Any] = {"sizes": {}, "splits": {}, "landmarks": {}}
    for structure, short in CXR_STRUCTURES.items():
        samples = resolve_source(data, structures=structure)
        for s in samples[:limit] if limit else samples:
            mask = load_sample_mask(s) == 1
            found = mask_landmarks(mask)
            out["sizes"][s.id], out["splits"][s.id] = list(mask.shape), s.split
            entry = out["landmarks"].setdefault(s.id, {})
            for kind in CXR_KEEP[short]:
                if kind in found:
                    entry[f"{short}_{kind}"] = [round(v, 2) for v in found[kind]]
    return out


def landmark_truth(data: str, truth: str | None = None, limit: int = 0) -> dict[str, dict[str, list[float]]]:
    """{id: {name: [row, col]}} from the file ``truth``, else the layout's own landmarks, else the CXR outlines."""
    if truth:
        return json.loads(Path(truth).read_text())["landmarks"]
    own = {s.id: {k: list(v) for k, v in s.landmarks.items()} for s in resolve_source(data) if getattr(s, "landmarks", None)}
    return own or cxr_landmarks(data, limit)["landmarks"]


def split_supports(samples: Sequence[Sample], support: str | None, count: int) -> tuple[list[Sample], list[Sample]]:
    """(supports, queries): ``support`` (an id; default the first training image) plus the next
    ``count`` - 1 training images; every other sample is a query."""
    train = [s for s in samples if s.split == "train"] or list(samples)
    first = next((s for s in samples if s.id == support), None) if support else train[0]
    if first is None:
        raise SystemExit(f"support {support} not found")
    supports = [first] + [s for s in train if s.id != first.id][: count - 1]
    chosen = {s.id for s in supports}
    return supports, [s for s in samples if s.id not in chosen]


def one_shot_errors(embed: Callable[[torch.Tensor], torch.Tensor], model_size: Sequence[int], channels: int, supports: Sequence[Sample],
                    queries: Sequence[Sample], marks: dict[str, dict[str, list[float]]], sigmas: Sequence[float], radii: Sequence[float] = (),
                    affine: bool = False, grid: Sequence[int] = (256, 256), ncc_half: int = 16, field_mm: float = 350.0) -> dict[str, Any]:
    """{names, grid: {method: {landmark: [error per query]}}, orig: {method: [errors]}, mm:
    {method: {landmark: [errors]}}} for methods ld, "ld window R", ("ld affine", "ld affine
    window R"), copy and ncc; ``embed``: (B, C, *model_size) -> (B, D, *model_size)."""
    names = sorted(marks[supports[0].id])
    ev = tuple(grid)
    locators, small, points = [], [], []
    for sup in supports:
        image = torch.from_numpy(load_sample_image(sup, channels))
        pts = np.array([marks[sup.id][n] for n in names])
        locators.append(OneShotLocator(embed, model_size, sigmas, align="affine" if affine else "none").fit(image, pts))
        small.append(resize_image(image, ev).mean(0).numpy())  # NCC on the grey image
        points.append(to_model_coords(pts, image.shape[1:], ev))
    windows = {"ld": 0.0, **{f"ld window {r:g}": r for r in radii}}  # one embedding pass, several searches
    aligned = {"ld affine": 0.0, **{f"ld affine window {r:g}": r for r in radii}} if affine else {}
    methods = (*windows, *aligned, "copy", "ncc")
    errs = {m: {n: [] for n in names} for m in methods}
    orig = {m: [] for m in methods}
    mm = {m: {n: [] for n in names} for m in methods}
    for s in queries:
        image = torch.from_numpy(load_sample_image(s, channels))
        size = image.shape[1:]
        truth = np.array([marks[s.id][n] for n in names])
        query_small = resize_image(image, ev).mean(0).numpy()
        answers = []
        for loc, sup_small, pts in zip(locators, small, points):
            sim, centers = loc.similarity(image, with_centers=True)
            answers.append({**{m: loc.locate(sim, size, r).points for m, r in windows.items()},
                            **{m: loc.locate(sim, size, r, centers).points for m, r in aligned.items()},
                            "copy": copy_landmarks(pts, size, ev), "ncc": ncc_landmarks(sup_small, pts, query_small, size, ncc_half)})
        for m in methods:
            pred = np.median([a[m] for a in answers], axis=0)
            for n, e in zip(names, radial_errors(to_model_coords(pred, size, ev), to_model_coords(truth, size, ev))):
                errs[m][n].append(float(e))
            e_orig = radial_errors(pred, truth)
            orig[m] += e_orig.tolist()
            for n, e in zip(names, e_orig * field_mm / max(size)):
                mm[m][n].append(float(e))
    return {"names": names, "grid": errs, "orig": orig, "mm": mm}


def summarize(errors: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{method: {overall, mre_orig_px, mre_mm_equivalent, per_landmark_mm_equivalent, per_landmark}}."""
    names, grid, mm = errors["names"], errors["grid"], errors["mm"]
    return {m: {"overall": summarize_errors([e for n in names for e in grid[m][n]]), "mre_orig_px": float(np.mean(errors["orig"][m])),
                "mre_mm_equivalent": float(np.mean([e for n in names for e in mm[m][n]])),
                "per_landmark_mm_equivalent": {n: float(np.mean(mm[m][n])) for n in names},
                "per_landmark": {n: summarize_errors(grid[m][n]) for n in names}} for m in grid}


def per_query(errors: dict[str, Any]) -> dict[str, np.ndarray]:
    """{method: (queries,) mean grid error over each query's landmarks}."""
    return {m: np.mean([errors["grid"][m][n] for n in errors["names"]], axis=0) for m in errors["grid"]}


def against_copy(errors: dict[str, Any], keep: np.ndarray | None = None) -> dict[str, dict[str, Any]]:
    """{method: paired_difference(method, copy)} over the queries ``keep`` (bool; default all);
    mean_a is the method's MRE, mean_b copy's, mean_diff < 0: closer than copy."""
    q = per_query(errors)
    keep = np.ones(len(q["copy"]), bool) if keep is None else keep
    return {m: paired_difference(q[m][keep], q["copy"][keep]) for m in q if m != "copy"}


def select_on_train(errors: dict[str, Any], is_test: np.ndarray) -> dict[str, Any] | None:
    """The LD variant (window, alignment) with the lowest MRE on the training-split queries,
    scored against copy on the test-split queries only (the number reported was not picked by
    its own labels); None without queries of both splits."""
    if not (is_test.any() and (~is_test).any()):
        return None
    q = per_query(errors)
    chosen = min((m for m in q if m.startswith("ld")), key=lambda m: q[m][~is_test].mean())
    return {"method": chosen, "selected_on": f"{int((~is_test).sum())} training-split queries (lowest MRE)",
            "test": against_copy(errors, is_test)[chosen]}
