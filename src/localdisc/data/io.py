"""Reading images, masks and volumes into numpy, with errors that name the file.

Conventions used across localdisc:
- images: float32 array (C, *spatial), intensities scaled to [0, 1] by ONE rule (below);
- masks: int64 array (*spatial) of class indices (0 = background);
- 2D spatial = (H, W); 3D spatial = (D, H, W) in the file's voxel order.

Intensity rule, the same for 2D images and volumes of every format:
- 8-bit images (uint8; 1-bit images read as 0/255): value / 255, the dtype's range, so no
  pixel can change another's value;
- everything else (uint16 and other integers, floats; every NIfTI, DICOM and .npy volume):
  clipped to the image's own 0.5th and 99.5th percentiles (all channels together, so colours
  keep their balance), then mapped linearly to [0, 1]. One outlier pixel moves a percentile by
  at most one step between neighbouring sorted values, so it cannot darken the rest of an
  image of a few hundred pixels or more (scaling by the maximum or by "12-bit unless a pixel
  exceeds 4095" made one pixel of 4096 darken a whole image 16x). The rule is scale-free: a
  12-bit scan stored in uint16 keeps full contrast, and MRI files of one dataset whose maxima
  range from 139 to 1.2e6 come out alike. A constant image reads as zeros; where the two
  percentiles coincide but the image is not constant (a few bright pixels on a flat
  background), its minimum and maximum are used instead.
- values must be real, finite and within float32 range: complex, NaN, Inf or 1e300 values are
  refused with the file named.

Every reader checks its size limits from the file's header before decoding pixels, and opens
only regular files (a FIFO, device or folder given as a file is refused, never read).
"""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DataError, shorten
from . import files
from .files import check_size, require_file
from .geometry import check_affine, dicom_headers, geometry_of, read_dicom, split_series_path, to_localdisc

_KIND_NAMES = {"c": "complex", "O": "Python object", "V": "structured", "U": "text", "S": "bytes", "M": "datetime", "m": "timedelta"}


def _check_dtype(path: Path, dtype: np.dtype) -> None:
    """Only real numbers are pixels: complex (the imaginary part would vanish silently), object
    (unpickling runs code), text or record arrays are refused."""
    if dtype.kind not in "biuf":
        raise DataError(f"{path}: holds {_KIND_NAMES.get(dtype.kind, shorten(dtype, 40))} values ({shorten(dtype, 40)}); "
                        "expected real numbers (an integer or float array)")


def _check_values(path: Path, data: np.ndarray) -> None:
    """Real, finite, and within float32's range (all of localdisc computes in float32: 1e300
    would become Inf, and percentiles of Inf are NaN)."""
    _check_dtype(path, data.dtype)
    if data.dtype.kind != "f" or data.size == 0:
        return
    bad = int(data.size - np.count_nonzero(np.isfinite(data)))
    if bad:
        raise DataError(f"{path}: holds NaN or infinite values ({bad:,} of {data.size:,}); expected finite numbers")
    top = float(np.abs(data).max())
    if top > float(np.finfo(np.float32).max):
        raise DataError(f"{path}: holds values up to {top:.3g}, beyond float32 range (3.4e38); expected plausible intensities or labels")


def _gunzip(path: Path, limit_bytes: int) -> bytes:
    """Decompress a .gz file in memory, refusing more than ``limit_bytes`` of output."""

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
    p, _ = split_series_path(path)
    return p.is_dir() or suffix_of(p) in VOLUME_SUFFIXES


def _gray_palette(im) -> bool:
    """Whether every palette entry the image uses is a gray level (R = G = B): such a palette
    image is a gray picture (GIF stores every image with a palette, and may order the entries
    white first), not a map of class indices."""
    idx = np.asarray(im)[..., 0] if im.mode == "PA" else np.asarray(im)
    pal = np.asarray(im.getpalette("RGB") or [0, 0, 0], np.uint8).reshape(-1, 3)
    used = np.unique(idx)
    rgb = pal[used[used < len(pal)]]
    return bool((rgb == rgb[:, :1]).all())


def _palette_pixels(im, labels: bool) -> np.ndarray:
    """(H, W) class indices for a label map with a colour palette (a VOC-style mask whose
    classes 1 and 2 are red and green would otherwise read as one class); else the colours:
    (H, W) gray levels for a gray palette, (H, W, 3|4) RGB(A) for an image."""
    if labels and not _gray_palette(im):
        return np.asarray(im)[..., 0] if im.mode == "PA" else np.asarray(im)
    if labels:
        return np.asarray(im.convert("L"))
    return np.asarray(im.convert("RGBA" if "transparency" in im.info or im.mode == "PA" else "RGB"))


def _upright(path: Path, im):
    """The image as a viewer shows it: its EXIF (or TIFF) orientation applied. Phones and
    dermoscopes store the sensor's rotation in a tag; images and masks both pass here, so a
    mask stays aligned with its image whichever of them carries the tag."""

    try:
        return ImageOps.exif_transpose(im)
    except Exception as e:  # a malformed EXIF block: Pillow raises several kinds
        raise DataError(f"{path}: unreadable EXIF orientation ({type(e).__name__}: {shorten(e)})") from e


def _read_2d_raw(path: Path, labels: bool = False) -> np.ndarray:
    """2D image file -> (H, W) or (H, W, C) array, upright. ``labels``: a palette image is read
    as its class indices (see :func:`_palette_pixels`)."""

    Image.MAX_IMAGE_PIXELS = None  # localdisc's own limit applies, from the header, with the file named
    require_file(path)
    try:
        # gzip-compressed images (STARE ships im0001.ppm.gz): decompress in memory, capped.
        src: Path | io.BytesIO = path
        if path.name.lower().endswith(".gz"):
            src = io.BytesIO(_gunzip(path, files.MAX_PIXELS * 8 + 4096))
        with Image.open(src) as im:
            check_size(path, im.size[::-1], files.MAX_PIXELS, "pixels")
            if im.format == "TIFF":
                _check_tiff_strips(path, im)
            im.load()
            im = _upright(path, im)
            if im.mode in ("P", "PA"):
                return _palette_pixels(im, labels)
            if im.mode in ("I;16", "I;16B", "I;16L"):
                return np.asarray(im).astype(np.uint16)
            if im.mode == "CMYK":
                im = im.convert("RGB")
            elif im.mode == "1":
                im = im.convert("L")
            return np.asarray(im)
    except FileNotFoundError as e:
        raise DataError(f"{path}: file not found") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as e:
        raise DataError(f"{path}: unreadable or truncated image ({shorten(e, 160)})") from e


def _read_volume_raw(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    """Volume -> ((D, H, W) array reoriented to RAS, spacing in mm per (D, H, W) voxel)."""
    data, geom = read_volume(path)
    return data, (geom.spacing if geom is not None else (1.0,) * data.ndim)


def read_volume(path: str | Path):
    """Volume -> ((D, H, W) array of the volume reoriented to RAS, :class:`~.geometry.Geometry`
    of the source file, None for .npy arrays, which have no geometry). Sizes are checked from
    the header before any voxel is read; values must be real and finite (see module docstring)."""

    folder, _ = split_series_path(path)
    suffix = suffix_of(folder)
    if suffix in (".nii", ".nii.gz"):
        data, geom = _read_nifti(Path(path))
    elif suffix == ".npy":
        return _read_npy(Path(path)), None
    elif folder.is_dir() or suffix == ".dcm":
        data, geom = read_dicom(path)  # checks slice sizes and limits from the headers first
        check_size(Path(folder), data.shape, files.MAX_VOXELS, "voxels")
    else:
        raise DataError(f"{path}: unsupported volume format {suffix!r} (volumes: NIfTI .nii/.nii.gz, DICOM series, .npy)")
    _check_values(Path(path), data)
    return to_localdisc(data, geom), geom


def _nifti_header(path: Path):
    """nibabel image (header read, no voxel) and its validated :class:`~.geometry.Geometry`."""
    import nibabel as nib  # deferred: heavy optional dependency, loaded only when used

    require_file(path)
    try:
        img = nib.load(str(path))
    except Exception as e:
        raise DataError(f"{path}: unreadable NIfTI volume ({shorten(e)})") from e
    _check_pixdim(path, img)
    check_affine(img.affine, path)
    return img, geometry_of(img.affine, img.shape[:3])


def _check_pixdim(path: Path, img) -> None:
    """Voxel sizes in the raw header must be finite and non-zero: nibabel silently turns a zero
    pixdim into 1 mm, so the header is read again without its fixes."""
    from nibabel.openers import ImageOpener  # deferred: heavy optional dependency, loaded only when used

    try:
        with ImageOpener(str(path)) as f:
            raw = type(img.header).from_fileobj(f, check=False)
        zooms = np.asarray(raw["pixdim"][1 : 1 + min(3, len(img.shape))], np.float64)
    except Exception as e:
        raise DataError(f"{path}: unreadable NIfTI header ({shorten(e)})") from e
    if not np.isfinite(zooms).all() or (zooms == 0).any():
        raise DataError(f"{path}: NIfTI voxel size (pixdim) {shorten(zooms.tolist())} must be finite and non-zero; the header is broken")


def _read_nifti(path: Path):
    """NIfTI -> (file-order (i, j, k) array, geometry); size and geometry checked from the header."""
    img, geom = _nifti_header(path)
    check_size(path, img.shape, files.MAX_VOXELS, "voxels")  # from the header, before the data are read
    try:
        data = np.asanyarray(img.dataobj)
    except Exception as e:
        raise DataError(f"{path}: unreadable NIfTI volume ({shorten(e)})") from e
    if data.ndim == 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(f"{path}: expected a 3-D volume, got shape {data.shape}")
    return data, geom


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of a .npy file from its header alone; no array data is read."""
    fmt = np.lib.format
    require_file(path)
    try:
        with open(path, "rb") as f:
            version = fmt.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = fmt.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = fmt.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
    except Exception as e:  # numpy's header parser raises several kinds on garbage
        raise DataError(f"{path}: unreadable .npy header ({shorten(e)})") from e
    return tuple(int(s) for s in shape), dtype


def _read_npy_header_checked(path: Path) -> None:
    """A .npy header's dtype, dimensions and size against the limits (2-D: pixels, 3-D: voxels)."""
    shape, dtype = _npy_header(path)
    _check_dtype(path, dtype)
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise DataError(f"{path}: .npy array of shape {shorten(shape, 60)}; expected a 2-D image (H, W) or a 3-D volume (D, H, W)")
    if len(shape) == 2:
        check_size(path, shape, files.MAX_PIXELS, "pixels")
    else:
        check_size(path, shape, files.MAX_VOXELS, "voxels")


def _read_npy(path: Path) -> np.ndarray:
    """.npy -> its (H, W) or (D, H, W) array; dtype, shape and size checked from the header
    before loading, and never unpickled."""
    _read_npy_header_checked(path)
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as e:
        raise DataError(f"{path}: unreadable .npy array ({shorten(e)})") from e
    _check_values(path, data)
    return data


def read_geometry(path: str | Path):
    """The source geometry of a volume (None for 2D images and .npy arrays); NIfTI from the
    header alone, DICOM by reading the series."""
    if not is_volume(path):
        return None
    if suffix_of(Path(str(path))) in (".nii", ".nii.gz"):
        return _nifti_header(Path(path))[1]
    return read_volume(path)[1]


def check_header(path: str | Path) -> None:
    """Fast validation of one file before training starts: it exists, is a readable image or
    volume, and its header promises no more pixels/voxels than the limits. Pixels are not
    decoded (gzip-compressed images are, capped), so a whole dataset is checked in seconds."""

    p, uid = split_series_path(path)
    if not p.is_dir():
        require_file(p)
    suffix = suffix_of(p)
    if p.name.lower().endswith(".gz") and suffix != ".nii.gz":
        _read_2d_raw(p)  # a compressed image has no header to peek at: decode it (capped)
        return
    if p.is_dir() or suffix == ".dcm":
        dicom_headers(path)  # every slice's header: sizes, spacing and limits, no pixel decoded
        return
    if suffix == ".npy":
        _read_npy_header_checked(p)
        return
    if suffix in (".nii", ".nii.gz"):
        img, _ = _nifti_header(p)
        check_size(p, img.shape[:3], files.MAX_VOXELS, "voxels")
        return
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(p) as im:
            check_size(p, im.size[::-1], files.MAX_PIXELS, "pixels")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as e:
        raise DataError(f"{p}: unreadable image ({shorten(e)})") from e


def read_spacing(path: str | Path) -> tuple[float, ...] | None:
    """Voxel spacing (mm) of a volume, (D, H, W) order; None for plain 2D images."""
    p = Path(path)
    return _read_volume_raw(p)[1] if is_volume(p) else None


def _scale_intensity(arr: np.ndarray) -> np.ndarray:
    """(C, *S) -> float32 (C, *S) in [0, 1] by the module's intensity rule: uint8 by 255,
    everything else by its own 0.5/99.5 percentiles (min/max where those coincide)."""
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise ValueError("holds NaN or infinite intensities")
    lo, hi = (float(v) for v in np.percentile(arr, [0.5, 99.5]))
    if hi <= lo:  # a flat background with a few bright pixels: the percentiles miss them
        lo, hi = float(arr.min()), float(arr.max())
        if hi <= lo:
            return np.zeros_like(arr)
    return np.clip((arr - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def _is_volume_file(p: Path) -> bool:
    """:func:`is_volume`, refusing a folder named like an image (``x.png/``) in one line
    instead of reading it as a DICOM series without slices."""
    if p.is_dir() and suffix_of(p) in IMAGE_SUFFIXES:
        require_file(p)
    return is_volume(p)


def read_image(path: str | Path, channels: int | None = None) -> np.ndarray:
    """Image or volume -> float32 (C, *spatial) in [0, 1].

    ``channels``: 1 converts RGB to luminance, 3 repeats a gray image; None keeps what the
    file has (alpha channels dropped). Other mismatches raise :class:`DataError`.
    """
    p = Path(path)
    if _is_volume_file(p):
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
    "auto": {0, 255} or {0, 1} -> binary, else class indices. Palette images are read as their
    indices (unless the palette is gray, see :func:`_palette_pixels`); RGB masks are reduced by
    their maximum over channels. With ``num_classes``, values outside 0..num_classes-1 raise.
    """
    return read_mask_values(path, values, num_classes)[0]


def read_mask_values(path: str | Path, values: str = "auto", num_classes: int | None = None) -> tuple[np.ndarray, list[int]]:
    """:func:`read_mask` and the file's own distinct values before any remapping (a 0/255
    mask gives classes [0, 1] but values [0, 255]), so that messages quote what the file holds."""
    p = Path(path)
    raw = _mask_raw(p)
    uniq = np.unique(raw)
    file_values = uniq.tolist()
    if (uniq < 0).any():
        raise DataError(f"{p}: mask holds negative values {uniq[uniq < 0][:5].tolist()}")
    binary = values == "binary" or (values == "auto" and (set(file_values) <= {0, 255} or set(file_values) <= {0, 1}))
    arr = (raw > 0).astype(np.int64) if binary else raw
    if not binary and values == "auto" and 255 in uniq and len(uniq) > 2:
        # JPEG-like artifacts around a 0/255 mask: a lossy mask is a data problem.
        mid = uniq[(uniq > 0) & (uniq < 255)]
        if len(mid) > 0 and num_classes in (None, 2):
            raise DataError(f"{p}: mask has unexpected values {mid[:5].tolist()} between 0 and 255 (lossy format?); expected 0/255 or class indices")
    if num_classes is not None and arr.max() >= num_classes:
        held = f" (the file holds values {shorten(file_values[:8], 60)})" if binary else ""
        raise DataError(f"{p}: mask holds class {int(arr.max())}{held}, but only {num_classes} classes (0..{num_classes - 1}) are configured")
    return arr, [int(v) for v in file_values]


def _mask_raw(p: Path) -> np.ndarray:
    """The file's label values as int64 (*spatial): whole numbers only, within int32."""
    if _is_volume_file(p):
        raw, _ = _read_volume_raw(p)
    else:
        raw = _read_2d_raw(p, labels=True)
        if raw.ndim == 3:
            raw = raw[..., :3].max(axis=-1) if raw.shape[-1] >= 3 else raw[..., 0]
    if np.issubdtype(raw.dtype, np.floating):
        if not np.isfinite(raw).all():
            raise DataError(f"{p}: mask contains NaN/Inf")
        if not np.allclose(raw, np.round(raw)):
            raise DataError(f"{p}: mask holds non-integer values; expected class indices")
    if raw.size and float(np.abs(raw).max()) > 2**31 - 1:
        raise DataError(f"{p}: mask holds values up to {float(np.abs(raw).max()):.3g}; expected class indices")
    return np.round(raw).astype(np.int64)
