"""The registry of named data layouts (``LAYOUT:/path`` specs): layout modules register
themselves with ``@register_layout(name)``; :func:`.sources.resolve_source` looks them up."""

from __future__ import annotations

from typing import Callable

from .records import Sample

# name -> callable(path: str, **opts) -> list[Sample]; filled by the layout modules.
LAYOUTS: dict[str, Callable[..., list[Sample]]] = {}


def register_layout(name: str):
    def deco(fn):
        LAYOUTS[name] = fn
        return fn

    return deco
