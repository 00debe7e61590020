"""A self-contained HTML report: tables, figures and example overlays, images embedded as
base64 data URIs, so the one file can be mailed or archived without its folder."""

from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path
from typing import Sequence

from PIL import Image

from ..runtime.checkpoint import atomic_write_text
from .tables import Table

STYLE = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.2em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead { background: #f2f2f2; }
.note { font-size: 0.8em; color: #555; }
.gallery { display: grid; grid-template-columns: repeat(3, 1fr); gap: 10px; }
.gallery img { width: 100%; }
figure { margin: 0 0 1em; } figcaption { font-size: 0.85em; color: #444; }
img.plot { max-width: 100%; }
code { background: #f4f4f4; padding: 0 0.2em; font-size: 0.9em; }
td.better { background: #e3f4e3; } td.worse { background: #fbe3e3; }
"""


def render_inline(text: str) -> str:
    """The Markdown a report line uses (`code`, **bold**) as HTML; everything else escaped."""
    out = html.escape(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", out)


def png_data_uri(path: str | Path, max_side: int | None = None, photo: bool = False) -> str:
    """PNG file -> 'data:image/...;base64,...', downscaled to ``max_side`` pixels if larger.
    ``photo``: re-encoded as JPEG (quality 88): overlays on photographs are 5-10x smaller so,
    and a report with dozens of them stays a file one can mail."""
    data = Path(path).read_bytes()
    if max_side or photo:
        im = Image.open(io.BytesIO(data))
        if max_side and max(im.size) > max_side:
            im.thumbnail((max_side, max_side))
        buf = io.BytesIO()
        if photo:
            im.convert("RGB").save(buf, format="JPEG", quality=88)
            return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
        im.save(buf, format="PNG", optimize=True)
        data = buf.getvalue()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def write_html_report(path: str | Path, title: str, intro: Sequence[str], tables: Sequence[Table],
                      figures: Sequence[tuple[str, str | Path]] = (), examples: dict[str, Sequence[tuple[str, str | Path]]] | None = None,
                      example_side: int = 800) -> Path:
    """Write the report. ``figures``: (caption, png); ``examples``: section -> [(caption, png)]
    (e.g. per method: its worst, median and best test image). Missing files are skipped."""

    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    parts += [f"<p>{render_inline(line)}</p>" for line in intro]
    shown = [(c, p) for c, p in figures if p is not None and Path(p).is_file()]
    for caption, png in shown[:1]:
        parts.append(f"<figure><img class='plot' src='{png_data_uri(png)}' alt='{html.escape(caption)}'><figcaption>{render_inline(caption)}</figcaption></figure>")
    parts.append("<h2>Results</h2>")
    parts += [t.to_html() for t in tables]
    for caption, png in shown[1:]:
        parts.append(f"<h2>{render_inline(caption.split(':')[0])}</h2><figure><img class='plot' src='{png_data_uri(png, photo=True)}' alt='{html.escape(caption)}'>"
                     f"<figcaption>{render_inline(caption)}</figcaption></figure>")
    if examples:
        parts.append("<h2>Each method's worst, median and best test image</h2><p class='note'>Ground truth solid, prediction dashed.</p>")
        for section, items in examples.items():
            imgs = [(c, p) for c, p in items if Path(p).is_file()]
            if not imgs:
                continue
            parts.append(f"<h3>{html.escape(section)}</h3><div class='gallery'>")
            parts += [f"<figure><img src='{png_data_uri(p, example_side, photo=True)}' alt='{html.escape(c)}'><figcaption>{html.escape(c)}</figcaption></figure>" for c, p in imgs]
            parts.append("</div>")
    parts.append("</body></html>")
    path = Path(path)
    atomic_write_text(path, "\n".join(parts))
    return path


__all__ = ["write_html_report", "png_data_uri"]
