"""Reading images, masks and volumes into numpy, with errors that name the file.

Conventions used across localdisc:
- images: float32 array (C, *spatial), intensities scaled to [0, 1] (8/16-bit integers by
  their range; float volumes by 0.5/99.5 percentile clipping);
- masks: int64 array (*spatial) of class indices (0 = background);
- 2D spatial = (H, W); 3D spatial = (D, H, W) in the file's voxel order.
"""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import numpy as np

from ..errors import DataError

# Headers are checked against these before any pixel is decoded (decompression bombs): a file
# that promises more is refused with one line naming it. LOCALDISC_MAX_PIXELS /
# LOCALDISC_MAX_VOXELS raise (or lower) them for a whole session.
MAX_PIXELS = int(float(os.environ.get("LOCALDISC_MAX_PIXELS", 100e6)))  # 10000 x 10000
MAX_VOXELS = int(float(os.environ.get("LOCALDISC_MAX_VOXELS", 512**3)))


def _check_size(path: Path, shape, limit: int, what: str) -> None:
    n = int(np.prod([int(s) for s in shape], dtype=np.float64))
    if n > limit:
        env = "LOCALDISC_MAX_PIXELS" if what == "pixels" else "LOCALDISC_MAX_VOXELS"
        raise DataError(f"{path}: header promises {'x'.join(str(int(s)) for s in shape)} = {n:,} {what}, more than the limit of "
                        f"{limit:,} (refused before decoding; raise it with localdisc --max-{what} N or {env} if the file is genuine)")


def _gunzip(path: Path, limit_bytes: int) -> bytes:
    """Decompress a .gz file in memory, refusing more than ``limit_bytes`` of output."""
    import zlib

    try:
        with gzip.open(path) as fz:
            data = fz.read(limit_bytes + 1)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: corrupted gzip data ({e})") from e
    if len(data) > limit_bytes:
        raise DataError(f"{path}: decompresses to more than {limit_bytes:,} bytes (the pixel limit); refused")
    return data


def _check_tiff_strips(path: Path, im) -> None:
    """An uncompressed TIFF whose strips hold fewer bytes than its header's size needs is
    truncated or forged: Pillow would fill the rest with zeros (a 5 KB file decoding to
    20 x 4,259,844 RGB pixels, without a warning)."""
    tags = im.tag_v2
    if tags.get(259, 1) != 1:  # compressed: sizes are not known before decoding
        return
    bits = tags.get(258, (1,))  # the TIFF default is 1 bit per sample
    bits = bits if isinstance(bits, tuple) else (bits,)
    per_pixel = sum(int(b) for b in bits) if len(bits) > 1 else int(bits[0]) * len(im.getbands())
    need = -(-im.size[0] * per_pixel // 8) * im.size[1]  # rows are padded to whole bytes
    counts = tags.get(279, ())
    have = sum(int(c) for c in (counts if isinstance(counts, tuple) else (counts,)))
    if have < need:
        raise DataError(f"{path}: truncated or inconsistent TIFF: its strips hold {have:,} bytes, but {im.size[0]}x{im.size[1]} "
                        f"{im.mode} pixels need {need:,}")


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".bmp", ".webp", ".ppm", ".pgm")
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".dcm", ".npy")  # DICOM also as a folder, or FOLDER#SeriesInstanceUID


def suffix_of(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def is_volume(path: str | Path) -> bool:
    from .geometry import split_series_path

    p, _ = split_series_path(path)
    return p.is_dir() or suffix_of(p) in VOLUME_SUFFIXES


def _read_2d_raw(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = None  # localdisc's own limit applies, from the header, with the file named
    try:
        # gzip-compressed images (STARE ships im0001.ppm.gz): decompress in memory, capped.
        src: Path | io.BytesIO = path
        if path.name.lower().endswith(".gz"):
            src = io.BytesIO(_gunzip(path, MAX_PIXELS * 8 + 4096))
        with Image.open(src) as im:
            _check_size(path, im.size[::-1], MAX_PIXELS, "pixels")
            if im.format == "TIFF":
                _check_tiff_strips(path, im)
            im.load()
            if im.mode in ("P", "PA"):
                im = im.convert("RGBA" if "transparency" in im.info or im.mode == "PA" else "RGB")
            elif im.mode in ("I;16", "I;16B", "I;16L"):
                # keep uint16 so intensities scale by bit depth, not by percentiles
                return np.asarray(im).astype(np.uint16)
            elif im.mode == "CMYK":
                im = im.convert("RGB")
            elif im.mode == "1":
                im = im.convert("L")
            return np.asarray(im)
    except FileNotFoundError as e:
        raise DataError(f"{path}: file not found") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as e:
        raise DataError(f"{path}: unreadable or truncated image ({e})") from e


def _read_volume_raw(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    """Volume -> ((D, H, W) array reoriented to RAS, spacing in mm per (D, H, W) voxel)."""
    data, geom = read_volume(path)
    return data, (geom.spacing if geom is not None else (1.0,) * data.ndim)


def read_volume(path: str | Path):
    """Volume -> ((D, H, W) array of the volume reoriented to RAS, :class:`~.geometry.Geometry`
    of the source file, None for .npy arrays, which have no geometry)."""
    from .geometry import geometry_of, read_dicom, split_series_path, to_localdisc

    folder, _ = split_series_path(path)
    suffix = suffix_of(folder)
    if suffix in (".nii", ".nii.gz"):
        import nibabel as nib

        try:
            img = nib.load(str(path))
            _check_size(Path(path), img.shape, MAX_VOXELS, "voxels")  # from the header, before the data are read
            data = np.asanyarray(img.dataobj)
            affine = img.affine
        except FileNotFoundError as e:
            raise DataError(f"{path}: file not found") from e
        except DataError:
            raise
        except Exception as e:
            raise DataError(f"{path}: unreadable NIfTI volume ({e})") from e
        if data.ndim == 4 and data.shape[-1] == 1:
            data = data[..., 0]
        if data.ndim != 3:
            raise DataError(f"{path}: expected a 3-D volume, got shape {data.shape}")
        geom = geometry_of(affine, data.shape)
        return to_localdisc(data, geom), geom
    if suffix == ".npy":
        try:
            data = np.load(path, allow_pickle=False)
        except Exception as e:
            raise DataError(f"{path}: unreadable .npy array ({e})") from e
        return data, None
    if folder.is_dir() or suffix == ".dcm":
        data, geom = read_dicom(path)
        _check_size(Path(folder), data.shape, MAX_VOXELS, "voxels")
        return to_localdisc(data, geom), geom
    raise DataError(f"{path}: unsupported volume format {suffix!r} (volumes: NIfTI .nii/.nii.gz, DICOM series, .npy)")


def read_geometry(path: str | Path):
    """The source geometry of a volume (None for 2D images and .npy arrays); NIfTI from the
    header alone, DICOM by reading the series."""
    if not is_volume(path):
        return None
    if suffix_of(Path(str(path))) in (".nii", ".nii.gz"):
        import nibabel as nib

        from .geometry import geometry_of

        try:
            img = nib.load(str(path))  # the header; no voxel is read
        except Exception as e:
            raise DataError(f"{path}: unreadable NIfTI volume ({e})") from e
        return geometry_of(img.affine, img.shape[:3])
    return read_volume(path)[1]


def check_header(path: str | Path) -> None:
    """Fast validation of one file before training starts: it exists, is a readable image or
    volume, and its header promises no more pixels/voxels than the limits. Pixels are not
    decoded (gzip-compressed images are, capped), so a whole dataset is checked in seconds."""
    from PIL import Image, UnidentifiedImageError

    from .geometry import split_series_path

    p, uid = split_series_path(path)
    if not p.exists():
        raise DataError(f"{p}: file not found")
    suffix = suffix_of(p)
    if p.name.lower().endswith(".gz") and suffix != ".nii.gz":
        _read_2d_raw(p)  # a compressed image has no header to peek at: decode it (capped)
        return
    if p.is_dir() or suffix in (".dcm", ".npy"):
        return  # DICOM series and .npy are checked when read
    if suffix in (".nii", ".nii.gz"):
        import nibabel as nib

        try:
            shape = nib.load(str(p)).shape
        except Exception as e:
            raise DataError(f"{p}: unreadable NIfTI volume ({e})") from e
        _check_size(p, shape[:3], MAX_VOXELS, "voxels")
        return
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(p) as im:
            _check_size(p, im.size[::-1], MAX_PIXELS, "pixels")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as e:
        raise DataError(f"{p}: unreadable image ({e})") from e


def read_spacing(path: str | Path) -> tuple[float, ...] | None:
    """Voxel spacing (mm) of a volume, (D, H, W) order; None for plain 2D images."""
    p = Path(path)
    return _read_volume_raw(p)[1] if is_volume(p) else None


def _scale_intensity(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        top = 65535.0 if arr.max() > 4095 else 4095.0
        return arr.astype(np.float32) / top
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise ValueError("non-finite intensities")
    lo, hi = np.percentile(arr, [0.5, 99.5])
    if hi <= lo:
        return np.zeros_like(arr)
    return np.clip((arr - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)  # numpy 2: float64 percentiles would promote


def read_image(path: str | Path, channels: int | None = None) -> np.ndarray:
    """Image or volume -> float32 (C, *spatial) in [0, 1].

    ``channels``: 1 converts RGB to luminance, 3 repeats a gray image; None keeps what the
    file has (alpha channels dropped). Other mismatches raise :class:`DataError`.
    """
    p = Path(path)
    if is_volume(p):
        raw, _ = _read_volume_raw(p)
        arr = raw[None]
    else:
        raw = _read_2d_raw(p)
        if raw.ndim == 2:
            arr = raw[None]
        elif raw.ndim == 3 and raw.shape[2] in (2, 4):  # drop alpha
            arr = np.moveaxis(raw[..., : raw.shape[2] - 1], -1, 0)
        elif raw.ndim == 3:
            arr = np.moveaxis(raw, -1, 0)
        else:
            raise DataError(f"{p}: unexpected image array of shape {raw.shape}")
    try:
        arr = _scale_intensity(np.ascontiguousarray(arr))
    except ValueError as e:
        raise DataError(f"{p}: {e}") from e
    return convert_channels(arr, channels, p)


def convert_channels(arr: np.ndarray, channels: int | None, path: str | Path = "") -> np.ndarray:
    """(C, *S) -> (channels, *S): RGB to luminance (BT.601) or gray repeated; other mismatches
    raise :class:`DataError` naming ``path``."""
    have = arr.shape[0]
    if channels is None or channels == have:
        return arr
    if channels == 1 and have == 3:
        return (0.299 * arr[0] + 0.587 * arr[1] + 0.114 * arr[2])[None].astype(np.float32)
    if channels == 3 and have == 1:
        return np.repeat(arr, 3, axis=0)
    raise DataError(f"{path}: has {have} channel(s), but {channels} are expected")


def read_mask(path: str | Path, values: str = "auto", num_classes: int | None = None) -> np.ndarray:
    """Label map -> int64 (*spatial).

    ``values``: "binary" (any non-zero is foreground), "index" (pixel value = class), or
    "auto": {0, 255} or {0, 1} -> binary, else class indices. RGB masks are reduced by their
    maximum over channels. With ``num_classes``, values outside 0..num_classes-1 raise.
    """
    p = Path(path)
    if is_volume(p):
        raw, _ = _read_volume_raw(p)
    else:
        raw = _read_2d_raw(p)
        if raw.ndim == 3:
            raw = raw[..., :3].max(axis=-1) if raw.shape[-1] >= 3 else raw[..., 0]
    if np.issubdtype(raw.dtype, np.floating):
        if not np.isfinite(raw).all():
            raise DataError(f"{p}: mask contains NaN/Inf")
        if not np.allclose(raw, np.round(raw)):
            raise DataError(f"{p}: mask holds non-integer values; expected class indices")
    arr = np.round(raw).astype(np.int64)
    uniq = np.unique(arr)
    if (uniq < 0).any():
        raise DataError(f"{p}: mask holds negative values {uniq[uniq < 0][:5].tolist()}")
    if values == "binary" or (values == "auto" and set(uniq.tolist()) <= {0, 255}) or (values == "auto" and set(uniq.tolist()) <= {0, 1}):
        arr = (arr > 0).astype(np.int64)
    elif values == "auto" and 255 in uniq and len(uniq) > 2:
        # JPEG-like artifacts around a 0/255 mask: a lossy mask is a data problem.
        mid = uniq[(uniq > 0) & (uniq < 255)]
        if len(mid) > 0 and num_classes in (None, 2):
            raise DataError(f"{p}: mask has unexpected values {mid[:5].tolist()} between 0 and 255 (lossy format?); expected 0/255 or class indices")
    if num_classes is not None and arr.max() >= num_classes:
        raise DataError(f"{p}: mask holds class {int(arr.max())}, but only {num_classes} classes (0..{num_classes - 1}) are configured")
    return arr
