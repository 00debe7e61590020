"""localdisc: label-efficient medical image segmentation with local discrimination.

Pixel- and region-level self-supervised pretraining (2D and 3D), transfer into a U-Net,
one-shot landmarks and label-free structure discovery. The Python API (docs/api.md)::

    import localdisc
    ld = localdisc.pretrain(data="scans/", out="runs/ld", steps=2000)
    ft = localdisc.finetune(data="labeled/", out="runs/ft", init=ld, labels=5)
    localdisc.predict(ft, data="new/", out="runs/masks")

The functions are imported on first use (``localdisc --help`` stays fast without torch).
"""

__version__ = "0.1.0"

_API = ("pretrain", "finetune", "evaluate", "predict", "load_model", "Model", "embed", "export")


def __getattr__(name: str):
    if name in _API or name == "export":
        from . import api  # deferred: the API (and torch) load on first use, not on `import localdisc`

        # importing the API imports the subpackage localdisc.export, which binds that name to the
        # module; the package's name is the function (submodules are still imported by their path)
        globals().update({n: getattr(api, n) for n in _API})
        return globals()[name]
    raise AttributeError(f"module 'localdisc' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
