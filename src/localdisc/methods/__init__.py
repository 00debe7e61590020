"""Registry of pretraining methods: ``METHODS[name]`` is a :class:`PretrainMethod` subclass.

Add a method by writing its module and one line here. :func:`get_method` gives an error that
lists the valid names.
"""

from __future__ import annotations

from ..errors import ConfigError
from .base import PrepareContext, PretrainMethod

METHODS: dict[str, str] = {
    # name -> "module:Class" (imported on demand so that one method's import cost stays its own)
}


def get_method(name: str) -> type[PretrainMethod]:
    import importlib

    if name not in METHODS:
        raise ConfigError(f"unknown pretraining method {name!r}; valid: {', '.join(sorted(METHODS))}")
    module, cls = METHODS[name].split(":")
    return getattr(importlib.import_module(module, __name__), cls)


__all__ = ["METHODS", "get_method", "PretrainMethod", "PrepareContext"]
