"""benchmarks/position_shortcut.py (localdisc.tasks.position_shortcut): its score tells a content
embedding from a position embedding."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from localdisc.tasks.position_shortcut import shift_scores, shift_table, translate


def _image(seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.avg_pool2d(torch.rand(1, 1, 72, 72, generator=g), 3, 1, 1)


def test_translate_moves_content_down_and_right():
    x = _image()
    y = translate(x, 5)
    assert torch.equal(y[..., 5:, 5:], x[..., :-5, :-5])


def test_content_embedding_follows_position_embedding_stays():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(16, 1, 5, 5, generator=g)
    content = lambda x: F.conv2d(x, w, padding=2)  # noqa: E731  translation-equivariant
    s = shift_scores(content, _image(), 8)
    assert abs(s["follows"] - 1) < 0.05 and s["content_hits"] > 0.9 and s["place_hits"] < 0.1

    def position(x):
        H, W = x.shape[-2:]
        yy, xx = torch.meshgrid(torch.linspace(-3, 3, H), torch.linspace(-3, 3, W), indexing="ij")
        return torch.stack([torch.cos(yy), torch.sin(yy), torch.cos(xx), torch.sin(xx)])[None]

    s = shift_scores(position, _image(), 8)
    assert abs(s["follows"]) < 0.05 and s["place_hits"] > 0.9 and s["content_hits"] < 0.1


def test_shift_table_averages_each_shift_over_the_images():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(8, 1, 5, 5, generator=g)
    content = lambda x: F.conv2d(x, w, padding=2)  # noqa: E731
    images = [_image(0), torch.full_like(_image(0), 0.5)]  # a flat image: its matches land anywhere
    table = shift_table(content, images, [4, 8])
    per = [shift_scores(content, im, 8) for im in images]
    assert list(table) == ["4", "8"] and per[0]["content_hits"] > per[1]["content_hits"] + 0.5
    assert all(abs(table["8"][k] - (per[0][k] + per[1][k]) / 2) < 1e-9 for k in ("follows", "content_hits", "place_hits"))
