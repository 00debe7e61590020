"""Figures of the benchmark scripts (benchmarks/): overlay strips and grids, curves (matplotlib, Agg).

- :func:`overlay_strip`: an image and binary maps over it, side by side (the retina photograph);
- :func:`overlay_grid`: one row per image, titled columns: the image, then maps over it
  (yellow: hit, red: false positive, green: missed, against a truth);
- :func:`dice_curve`: Dice of prediction rules against pretraining steps, baselines as lines;
- :func:`gain_curve`: a mean difference with its 95% CI against pretraining steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..pictures.embeddings import titled_grid
from ..tasks.discover import save_mask_overlay, to_rgb


def overlay_strip(image: np.ndarray, maps: dict[str, np.ndarray], path: Path, work: Path, side: int = 512) -> Path:
    """image (C, H, W) in [0, 1] | each map (H, W) bool over it in cyan, tiles ``side`` px wide;
    the tiles are drawn into ``work`` first (kept, to look at full size)."""
    work.mkdir(parents=True, exist_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tiles = [Image.fromarray(to_rgb(image))]
    for name, binary in maps.items():
        save_mask_overlay(image, binary, work / f"retina_{name}.png")
        tiles.append(Image.open(work / f"retina_{name}.png").convert("RGB"))
    fig = Image.new("RGB", (side * len(tiles), side))
    for i, t in enumerate(tiles):
        fig.paste(t.resize((side, side)), (i * side, 0))
    fig.save(path)
    return path


def overlay_grid(rows: Sequence[tuple[np.ndarray, np.ndarray, Sequence[np.ndarray]]], titles: Sequence[str], path: Path, work: Path, side: int = 256) -> Path:
    """rows: (grey (H, W) in [0, 1], truth (H, W) bool, maps [(H, W) bool]); columns: the grey
    image, the truth over it, then each map over it scored against the truth."""
    work.mkdir(parents=True, exist_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns: list[list[np.ndarray]] = [[] for _ in titles]
    for row, (grey, truth, maps) in enumerate(rows):
        tiles = [Image.fromarray((np.clip(grey, 0, 1) * 255).astype(np.uint8)).convert("RGB")]
        for j, pred in enumerate((truth, *maps)):
            tile = work / f"{row}_{j}.png"
            save_mask_overlay(grey[None], pred, tile, None if j == 0 else truth)
            tiles.append(Image.open(tile).convert("RGB"))
        for col, t in enumerate(tiles):
            columns[col].append(np.asarray(t.resize((side, side))))
    Image.fromarray(titled_grid([np.stack(c) for c in columns], list(titles))).save(path)
    return path


def dice_curve(steps: Sequence[int], rules: dict[str, Sequence[float]], baselines: dict[str, float], path: Path) -> Path:
    """Dice of each rule (name -> one value per step) against steps; baselines as horizontal lines."""
    import matplotlib  # deferred: heavy optional dependency, loaded only when used

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred: heavy optional dependency, loaded only when used

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in rules.items():
        ax.plot(steps, values, "o-", label=name)
    for (name, value), style in zip(baselines.items(), ("--", ":", "-.")):
        ax.axhline(value, ls=style, color="gray", label=name)
    ax.set_xlabel("pretraining steps (stage 1 + stage 2)")
    ax.set_ylabel("Dice inside the FOV (test)")
    ax.set_ylim(0, 1)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def gain_curve(steps: Sequence[int], mean: Sequence[float], low: Sequence[float], high: Sequence[float], path: Path, title: str) -> Path:
    """A mean difference (e.g. Dice of LD minus random init) with its CI [low, high] per step count."""
    import matplotlib  # deferred: heavy optional dependency, loaded only when used

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred: heavy optional dependency, loaded only when used

    m, lo, hi = (np.asarray(v, float) for v in (mean, low, high))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=120)
    ax.errorbar(list(steps), m, yerr=[m - lo, hi - m], fmt="o-", color="#e41a1c", capsize=3)
    ax.axhline(0, color="k", lw=0.8, ls="--")
    ax.set_xlabel("LD pretraining steps")
    ax.set_ylabel("Dice: LD minus random init")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
