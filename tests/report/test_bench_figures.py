"""Figures of the benchmark scripts (report/bench_figures.py): every panel lands where it should."""

from __future__ import annotations

import numpy as np
from PIL import Image

from localdisc.report.bench_figures import dice_curve, gain_curve, overlay_grid, overlay_strip
from localdisc.report.plots import METHOD_COLORS, method_color


def test_a_strip_has_the_image_then_one_tile_per_map(tmp_path):
    image = np.zeros((3, 20, 30), np.float32)
    maps = {"a": np.zeros((20, 30), bool), "b": np.ones((20, 30), bool)}
    path = overlay_strip(image, maps, tmp_path / "out" / "strip.png", tmp_path / "work", side=16)
    strip = np.asarray(Image.open(path))
    assert strip.shape == (16, 48, 3) and (tmp_path / "work" / "retina_b.png").is_file()
    assert strip[:, :32].max() == 0 and strip[8, 40].tolist() == [0, 153, 153]  # the full map in cyan over black


def test_a_grid_has_one_row_per_image_and_a_titled_column_per_map(tmp_path):
    grey = np.full((8, 8), 0.5)
    truth, pred = np.zeros((8, 8), bool), np.zeros((8, 8), bool)
    truth[:4], pred[2:6] = True, True
    path = overlay_grid([(grey, truth, [pred])] * 2, ["image", "truth", "pred"], tmp_path / "grid.png", tmp_path / "work", side=40)
    grid = np.asarray(Image.open(path))
    assert grid.shape[1] == 3 * 160 + 2 * 4 and grid.shape[0] > 2 * 160  # tiles enlarged to 160 px, two rows under a header
    assert sorted(p.name for p in (tmp_path / "work").glob("*.png")) == ["0_0.png", "0_1.png", "1_0.png", "1_1.png"]


def test_curves_are_written(tmp_path):
    assert dice_curve([10, 20], {"rule": [0.2, 0.4]}, {"otsu": 0.3, "frangi": 0.1}, tmp_path / "c" / "dice.png").stat().st_size > 0
    assert gain_curve([10, 20], [0.01, 0.05], [-0.01, 0.02], [0.03, 0.08], tmp_path / "gain.png", "t").stat().st_size > 0


def test_the_methods_of_a_report_have_distinct_colours():
    names = list(METHOD_COLORS)
    assert "ld-guarded" in names  # the row every benchmark report adds
    assert len({method_color(n) for n in names}) == len(names)
