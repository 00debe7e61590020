"""MONAI bundle export: ``configs/metadata.json``, ``configs/inference.json``, ``models/model.pt2``.

The inference config reproduces localdisc's own prediction path (``tasks/evaluate.py``).
2D: read the image (8/16-bit PNG/JPEG/TIFF/BMP), scale to [0, 1] by bit depth, drop alpha,
convert RGB->luminance or gray->RGB to the trained channel count, resize to the training size
with antialiased bilinear interpolation, run the network (a ``torch.export`` program; a sliding
window with Gaussian blending when the run used patches), softmax, resize the probabilities
back bilinearly, argmax, and save one PNG of class indices per image (``NAME_seg.png``).
3D: read NIfTI volumes, reorient to RAS (``Orientationd``, as localdisc's reader does), scale
intensities like localdisc (8/16-bit by range, others by the 0.5-99.5 percentiles), predict
on the (z, y, x) array resized trilinearly to the training size, resize the probabilities back,
argmax, and save ``NAME_seg.nii.gz`` with the RAS image's affine (it overlays the source scan
in world coordinates). Run it with::

    python -m monai.bundle run --config_file BUNDLE/configs/inference.json \
        --meta_file BUNDLE/configs/metadata.json --bundle_root BUNDLE \
        --dataset_dir IMAGES --output_dir OUT

(``python -m monai.bundle`` needs the ``fire`` package; ``monai.bundle.run(...)`` does not.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..runtime.checkpoint import atomic_write_text
from ..runtime.model_card import card_fields, model_card_markdown
from .torch_export import to_torch_export

EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def inference_config(info: dict[str, Any]) -> dict[str, Any]:
    if len(info["image_size"]) == 3:
        return inference_config_3d(info)
    size = [int(s) for s in info["image_size"]]
    channels = int(info.get("in_channels") or info["unet"]["in_channels"])
    patch = [int(p) for p in (info.get("patch_size") or [])]
    use_window = bool(patch) and any(p < s for p, s in zip(patch, size))
    to_channels = {
        1: "$lambda x: (0.299 * x[0:1] + 0.587 * x[1:2] + 0.114 * x[2:3]) if x.shape[0] == 3 else x",
        3: "$lambda x: x.repeat(3, 1, 1) if x.shape[0] == 1 else x",
    }.get(channels, "$lambda x: x")
    inferer = (
        {"_target_": "SlidingWindowInferer", "roi_size": patch, "sw_batch_size": 4, "overlap": 0.25, "mode": "gaussian"}
        if use_window
        else {"_target_": "SimpleInferer"}
    )
    return {
        "imports": ["$import os", "$import glob", "$from PIL import Image"],
        "bundle_root": ".",
        "dataset_dir": "$os.path.join(@bundle_root, 'images')",
        "output_dir": "$os.path.join(@bundle_root, 'eval')",
        "device": "$torch.device('cuda' if torch.cuda.is_available() else 'cpu')",
        "image_size": size,
        "channels": channels,
        "extensions": list(EXTS),
        "datalist": "$[{'image': f, 'name': os.path.splitext(os.path.basename(f))[0]} for f in sorted(glob.glob(os.path.join(@dataset_dir, '*'))) if f.lower().endswith(tuple(@extensions))]",
        "network": "$torch.export.load(os.path.join(@bundle_root, 'models', 'model.pt2')).module().to(@device)",
        "preprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "LoadImaged", "keys": "image", "reader": "PILReader", "reverse_indexing": False, "image_only": True, "dtype": None},
                {"_target_": "EnsureChannelFirstd", "keys": "image"},
                {"_target_": "EnsureTyped", "keys": "image", "data_type": "tensor", "track_meta": False, "dtype": None},
                {"_target_": "Lambdad", "keys": "image", "func": "$lambda x: x[:-1] if x.shape[0] in (2, 4) else x"},
                {"_target_": "Lambdad", "keys": "image", "func": "$lambda x: x.float() / 255.0 if x.dtype == torch.uint8 else x.float() / (65535.0 if x.max() > 4095 else 4095.0)"},
                {"_target_": "Lambdad", "keys": "image", "func": to_channels},
                {"_target_": "Lambda", "func": "$lambda d: {**d, 'spatial_shape': list(d['image'].shape[1:])}"},
                {"_target_": "Lambdad", "keys": "image", "func": "$lambda x: x if list(x.shape[1:]) == @image_size else torch.nn.functional.interpolate(x[None], size=@image_size, mode='bilinear', align_corners=False, antialias=True)[0]"},
            ],
        },
        "dataset": {"_target_": "Dataset", "data": "@datalist", "transform": "@preprocessing"},
        "inferer": inferer,
        "predict": "$lambda d: torch.nn.functional.interpolate(torch.softmax(@inferer(d['image'][None].to(@device), @network).float(), dim=1), size=d['spatial_shape'], mode='bilinear', align_corners=False).argmax(1)[0].to(torch.uint8).cpu().numpy()",
        "save": "$lambda name, mask: Image.fromarray(mask).save(os.path.join(@output_dir, name + '_seg.png'))",
        "initialize": ["$torch.set_grad_enabled(False)", "$os.makedirs(@output_dir, exist_ok=True)"],
        "run": ["$[@save(d['name'], @predict(d)) for d in @dataset]"],
    }


def inference_config_3d(info: dict[str, Any]) -> dict[str, Any]:
    size = [int(s) for s in info["image_size"]]
    patch = [int(p) for p in (info.get("patch_size") or [])]
    use_window = bool(patch) and any(p < s for p, s in zip(patch, size))
    inferer = (
        {"_target_": "SlidingWindowInferer", "roi_size": patch, "sw_batch_size": 4, "overlap": 0.25, "mode": "gaussian"}
        if use_window
        else {"_target_": "SimpleInferer"}
    )
    return {
        "imports": ["$import os", "$import glob", "$import numpy as np", "$import nibabel as nib"],
        "bundle_root": ".",
        "dataset_dir": "$os.path.join(@bundle_root, 'images')",
        "output_dir": "$os.path.join(@bundle_root, 'eval')",
        "device": "$torch.device('cuda' if torch.cuda.is_available() else 'cpu')",
        "image_size": size,
        "datalist": "$[{'image': f, 'name': os.path.basename(f).split('.nii')[0]} for f in sorted(glob.glob(os.path.join(@dataset_dir, '*.nii*')))]",
        "network": "$torch.export.load(os.path.join(@bundle_root, 'models', 'model.pt2')).module().to(@device)",
        "preprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "LoadImaged", "keys": "image", "reader": "NibabelReader", "image_only": True, "dtype": None},
                {"_target_": "EnsureChannelFirstd", "keys": "image", "channel_dim": "no_channel"},
                {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
            ],
        },
        "dataset": {"_target_": "Dataset", "data": "@datalist", "transform": "@preprocessing"},
        "inferer": inferer,
        # localdisc's intensity scaling (data/io.py): 8/16-bit by range, others by the 0.5 and 99.5 percentiles
        "scale": "$lambda x: x.float() / 255.0 if x.dtype == torch.uint8 else (x.float() / (65535.0 if x.max() > 4095 else 4095.0) if x.dtype == torch.uint16 else (lambda lo, hi: ((x.float() - lo) / max(hi - lo, 1e-12)).clamp(0, 1))(*[float(v) for v in np.percentile(np.asarray(x, dtype=np.float32), [0.5, 99.5])]))",
        "to_zyx": "$lambda x: torch.as_tensor(x).permute(0, 3, 2, 1)",
        "predict": "$lambda d: torch.nn.functional.interpolate(torch.softmax(@inferer(torch.nn.functional.interpolate(@scale(@to_zyx(d['image']))[None], size=@image_size, mode='trilinear', align_corners=False).to(@device), @network).float(), dim=1), size=list(@to_zyx(d['image']).shape[1:]), mode='trilinear', align_corners=False).argmax(1)[0].permute(2, 1, 0).to(torch.uint8).cpu().numpy()",
        "save": "$lambda d, mask: nib.save(nib.Nifti1Image(mask, np.asarray(d['image'].affine, dtype=np.float64)), os.path.join(@output_dir, d['name'] + '_seg.nii.gz'))",
        "initialize": ["$torch.set_grad_enabled(False)", "$os.makedirs(@output_dir, exist_ok=True)"],
        "run": ["$[@save(d, @predict(d)) for d in @dataset]"],
    }


def metadata(info: dict[str, Any]) -> dict[str, Any]:
    import monai  # deferred: heavy optional dependency, loaded only when used

    channels = int(info.get("in_channels") or info["unet"]["in_channels"])
    k = int(info["num_classes"])
    names = info.get("class_names") or [str(i) for i in range(k)]
    return {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20220324.json",
        "version": "0.1.0",
        "changelog": {"0.1.0": f"exported by localdisc {__version__}"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": __import__("numpy").__version__,
        "required_packages_version": {"pillow": __import__("PIL").__version__},
        "name": f"localdisc {info.get('task', 'segmentation')} U-Net",
        "task": f"{k}-class {len(info['image_size'])}D segmentation",
        "description": "U-Net fine-tuned with localdisc (local-discrimination pretraining). Masks hold class indices.",
        "authors": "localdisc",
        "copyright": "see the training data's license",
        "network_data_format": {
            "inputs": {"image": {"type": "image", "format": "magnitude", "modality": "any", "num_channels": channels, "spatial_shape": list(info["image_size"]), "dtype": "float32", "value_range": [0, 1], "is_patch_data": False, "channel_def": {str(i): f"channel {i}" for i in range(channels)}}},
            "outputs": {"pred": {"type": "image", "format": "segmentation", "num_channels": k, "spatial_shape": list(info["image_size"]), "dtype": "float32", "value_range": [], "is_patch_data": False, "channel_def": {str(i): n for i, n in enumerate(names)}}},
        },
        "localdisc_model_card": card_fields(info),  # data, classes, intensity rule, label budget, init, scores
    }


def write_bundle(model: torch.nn.Module, info: dict[str, Any], folder: Path, check: bool = True) -> Path:
    """Write the bundle folder; returns it."""

    folder = Path(folder)
    (folder / "configs").mkdir(parents=True, exist_ok=True)
    (folder / "models").mkdir(exist_ok=True)
    to_torch_export(model, info, folder / "models" / "model.pt2", check=check)
    atomic_write_text(folder / "configs" / "inference.json", json.dumps(inference_config(info), indent=2))
    atomic_write_text(folder / "configs" / "metadata.json", json.dumps(metadata(info), indent=2))
    readme = "Run: python -m monai.bundle run --config_file configs/inference.json --meta_file configs/metadata.json --bundle_root . --dataset_dir IMAGES --output_dir OUT\n"
    atomic_write_text(folder / "docs" / "README.md", readme + "\n" + model_card_markdown(info))
    return folder
