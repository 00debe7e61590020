"""Where a volume's voxels are in the patient: read with the full affine, reoriented to one
common orientation for the networks, written back in the source's own voxel order and affine.

localdisc's arrays are (D, H, W) = (z, y, x) of the volume reoriented to the closest RAS+
orientation (nibabel's canonical: voxel axes flipped and permuted, never resampled), so that
every scan of a dataset has its axes pointing the same way whatever its file's orientation
(LPS, oblique, flipped). :class:`Geometry` remembers the source affine and orientation, so a prediction made
on the array is written as NIfTI that overlays the source scan voxel for voxel in any viewer.

DICOM series are grouped by SeriesInstanceUID and sorted along the slice normal (the cross
product of ImageOrientationPatient's row and column cosines); their affine is built from
ImagePositionPatient/ImageOrientationPatient/PixelSpacing (LPS in DICOM, RAS in NIfTI).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError, shorten
from . import files
from .files import check_size, require_file

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class Geometry:
    affine: np.ndarray  # (4, 4) source voxel index (i, j, k) of the file -> RAS world mm
    source_shape: tuple[int, int, int]  # the file's voxel array shape (i, j, k)
    ornt: np.ndarray  # nibabel orientation of the file axes (io_orientation of affine)

    def _per_ras_axis(self, per_file_axis) -> tuple:
        """Values given per file axis (i, j, k), in localdisc's (D, H, W) = (z, y, x) order."""
        per_ras = np.empty(3)
        per_ras[self.ornt[:, 0].astype(int)] = per_file_axis  # file axis -> its RAS axis
        return tuple(per_ras[::-1])

    @property
    def spacing(self) -> tuple[float, float, float]:
        """mm per voxel in localdisc's (D, H, W) order of the reoriented array."""
        return tuple(float(z) for z in self._per_ras_axis(np.sqrt((self.affine[:3, :3] ** 2).sum(0))))

    @property
    def shape(self) -> tuple[int, int, int]:
        """(D, H, W) of the reoriented array."""
        return tuple(int(s) for s in self._per_ras_axis(self.source_shape))

    def canonical_affine(self) -> np.ndarray:
        """Affine of the reoriented (x, y, z) RAS array (before localdisc's transpose)."""
        from nibabel.orientations import inv_ornt_aff  # deferred: heavy optional dependency, loaded only when used

        return self.affine @ inv_ornt_aff(self._to_ras(), self.source_shape)

    def _to_ras(self) -> np.ndarray:
        from nibabel.orientations import axcodes2ornt, ornt_transform  # deferred: heavy optional dependency, loaded only when used

        return ornt_transform(self.ornt, axcodes2ornt("RAS"))


def geometry_of(affine: np.ndarray, shape: tuple[int, ...]) -> Geometry:
    from nibabel.orientations import io_orientation  # deferred: heavy optional dependency, loaded only when used

    affine = np.asarray(affine, dtype=np.float64)
    return Geometry(affine, tuple(int(s) for s in shape[:3]), io_orientation(affine))


def check_affine(affine: np.ndarray, where: str | Path) -> None:
    """Refuse a voxel -> world affine that no voxel grid has: NaN/Inf, a voxel axis of zero
    length, or axes (nearly) parallel (a singular matrix): reorienting, spacing and writing
    predictions back would all be garbage. One line naming ``where``; the matrix is not echoed."""
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4) or not np.isfinite(a).all():
        raise DataError(f"{where}: voxel-to-world affine (sform/qform) holds NaN or infinite values; the file's geometry header is broken")
    m = a[:3, :3]
    norms = np.sqrt((m**2).sum(0))
    if (norms <= 0).any():
        axis = int(np.argmin(norms))
        raise DataError(f"{where}: voxel-to-world affine gives voxel axis {axis} zero length (voxel size 0); the file's geometry header is broken")
    if abs(np.linalg.det(m)) <= 1e-6 * float(norms.prod()):
        raise DataError(f"{where}: voxel-to-world affine is singular (two voxel axes point the same way); the file's geometry header is broken")


def to_localdisc(data: np.ndarray, geom: Geometry) -> np.ndarray:
    """File voxel array (i, j, k) -> localdisc (D, H, W) = (z, y, x) of the RAS-reoriented volume."""
    from nibabel.orientations import apply_orientation  # deferred: heavy optional dependency, loaded only when used

    return np.ascontiguousarray(np.transpose(apply_orientation(data, geom._to_ras()), (2, 1, 0)))


def to_source(array: np.ndarray, geom: Geometry) -> np.ndarray:
    """Inverse of :func:`to_localdisc`: (D, H, W) -> the file's own voxel order (i, j, k)."""
    from nibabel.orientations import apply_orientation, axcodes2ornt, ornt_transform  # deferred: heavy optional dependency, loaded only when used

    ras = np.transpose(array, (2, 1, 0))
    back = ornt_transform(axcodes2ornt("RAS"), geom.ornt)
    out = np.ascontiguousarray(apply_orientation(ras, back))
    if out.shape != geom.source_shape:
        raise DataError(f"prediction of shape {out.shape} does not fit the source volume's {geom.source_shape}")
    return out


def write_nifti(array: np.ndarray, geom: Geometry, path: str | Path, dtype=np.uint8) -> Path:
    """Write a localdisc (D, H, W) array as NIfTI in the source's voxel order with its affine
    (sform and qform), so it overlays the source scan in 3D Slicer, ITK-SNAP, ..."""
    import nibabel as nib  # deferred: heavy optional dependency, loaded only when used

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(to_source(array, geom).astype(dtype), geom.affine)
    img.set_sform(geom.affine, code=1)
    img.set_qform(geom.affine, code=1)
    nib.save(img, str(path))
    return path


# ---------------------------------------------------------------- DICOM


def _dicom_header(f: Path):
    """One file's header (pixel data not read); a FIFO or device named .dcm is refused unopened."""
    import pydicom  # deferred: heavy optional dependency, loaded only when used

    require_file(f, "a DICOM file")
    try:
        return pydicom.dcmread(str(f), stop_before_pixels=True)
    except Exception as e:
        raise DataError(f"{f}: unreadable DICOM file ({shorten(e)})") from e


def dicom_series(folder: Path) -> dict[str, list[Path]]:
    """SeriesInstanceUID -> its files, for every .dcm file of ``folder`` (headers only)."""
    return {uid: [f for f, _ in items] for uid, items in _series_headers(folder).items()}


def _series_headers(folder: Path) -> dict[str, list[tuple[Path, object]]]:
    series: dict[str, list[tuple[Path, object]]] = {}
    for f in sorted(folder.glob("*.dcm")):
        ds = _dicom_header(f)
        series.setdefault(str(getattr(ds, "SeriesInstanceUID", "")), []).append((f, ds))
    return series


def split_series_path(path: str | Path) -> tuple[Path, str | None]:
    """``DIR#UID`` (one series of a folder holding several) -> (DIR, UID); else (path, None)."""
    text = str(path)
    if "#" in text:
        folder, uid = text.rsplit("#", 1)
        if Path(folder).is_dir():
            return Path(folder), uid
    return Path(path), None


def dicom_headers(path: str | Path) -> list[tuple[Path, object]]:
    """(file, header) of every slice of a DICOM series (a folder, ``FOLDER#SeriesInstanceUID``,
    or one file), checked from the headers alone, before any pixel is decoded: one image size
    for all slices, positive finite PixelSpacing, and Rows x Columns x NumberOfFrames (per file)
    and slices x Rows x Columns (per series) within localdisc's pixel/voxel limits, so a 280 KB
    compressed file promising 12000 x 12000 pixels is refused unread."""
    folder, uid = split_series_path(path)
    if folder.is_dir():
        groups = _series_headers(folder)
        if not groups:
            raise DataError(f"{folder}: folder holds no .dcm files")
        if uid is None and len(groups) > 1:
            listing = ", ".join(f"{u} ({len(f)} files)" for u, f in groups.items())
            raise DataError(f"{folder}: holds {len(groups)} DICOM series; name one as {folder}#SERIES_UID: {listing}")
        if uid is not None and uid not in groups:
            raise DataError(f"{folder}: no DICOM series {uid}; found {', '.join(groups)}")
        items = groups[uid] if uid is not None else next(iter(groups.values()))
    else:
        items = [(folder, _dicom_header(folder))]
    _check_dicom_sizes(folder, items)
    for f, ds in items:
        _pixel_spacing(f, ds)
    return items


def _header_int(f: Path, ds, name: str, default: int) -> int:
    try:
        return int(getattr(ds, name, default) or default)
    except (TypeError, ValueError) as e:
        raise DataError(f"{f}: DICOM {name} is not a whole number") from e


def _check_dicom_sizes(folder: Path, items: list[tuple[Path, object]]) -> None:
    f0, ds0 = items[0]
    size0 = (_header_int(f0, ds0, "Rows", 0), _header_int(f0, ds0, "Columns", 0))
    for f, ds in items:
        rows, cols, frames = _header_int(f, ds, "Rows", 0), _header_int(f, ds, "Columns", 0), _header_int(f, ds, "NumberOfFrames", 1)
        if rows < 1 or cols < 1 or frames < 1:
            raise DataError(f"{f}: DICOM header gives no image size (Rows {rows}, Columns {cols}, NumberOfFrames {frames})")
        check_size(f, (frames, rows, cols) if frames > 1 else (rows, cols), files.MAX_PIXELS, "pixels")
        if frames > 1:
            raise DataError(f"{f}: multi-frame DICOM is not supported; export the series as one file per slice or as NIfTI")
        if (rows, cols) != size0:
            raise DataError(f"{f}: slice of {rows}x{cols} pixels in a series whose slices are {size0[0]}x{size0[1]} ({f0.name}); "
                            "the series mixes images of different sizes (a scout or a second series?)")
    check_size(folder, (len(items), *size0), files.MAX_VOXELS, "voxels")


def _pixel_spacing(f: Path, ds) -> tuple[float, float]:
    """(between rows, between columns) in mm; 1 mm when the header has none, refused when it
    is zero, negative, NaN or not two numbers."""
    raw = getattr(ds, "PixelSpacing", None)
    if raw is None:
        return 1.0, 1.0
    single = isinstance(raw, (str, bytes)) or not hasattr(raw, "__iter__")
    try:
        vals = [float(v) for v in ([raw] if single else raw)]
    except (TypeError, ValueError) as e:
        raise DataError(f"{f}: unreadable DICOM PixelSpacing") from e
    if len(vals) != 2 or not all(np.isfinite(v) and v > 0 for v in vals):
        raise DataError(f"{f}: DICOM PixelSpacing {shorten(vals, 60)} must be two positive numbers (mm between rows, columns)")
    return vals[0], vals[1]


def read_dicom(path: str | Path) -> tuple[np.ndarray, Geometry]:
    """A DICOM series (a folder, ``FOLDER#SeriesInstanceUID``, or one file) -> (file-order
    array (i=column, j=row, k=slice), geometry). A folder with several series must name one.
    Headers are checked (:func:`dicom_headers`) before any pixel is decoded."""
    import pydicom  # deferred: heavy optional dependency, loaded only when used

    folder, _ = split_series_path(path)
    items = dicom_headers(path)
    files = [f for f, _ in items]
    slices = []
    for f in files:
        try:
            ds = pydicom.dcmread(str(f))
            arr = ds.pixel_array.astype(np.float32)
        except Exception as e:
            raise DataError(f"{f}: unreadable DICOM file ({shorten(e)})") from e
        slope, inter = float(getattr(ds, "RescaleSlope", 1.0)), float(getattr(ds, "RescaleIntercept", 0.0))
        slices.append((ds, arr * slope + inter))
    ds0 = slices[0][0]
    iop = np.array([float(v) for v in getattr(ds0, "ImageOrientationPatient", [1, 0, 0, 0, 1, 0])])
    row_cos, col_cos = iop[:3], iop[3:]
    normal = np.cross(row_cos, col_cos)
    pos = lambda ds: np.array([float(v) for v in getattr(ds, "ImagePositionPatient", [0, 0, float(getattr(ds, "InstanceNumber", 0))])])  # noqa: E731
    slices.sort(key=lambda s: float(pos(s[0]) @ normal))
    flat = [f for f, (_, a) in zip(files, slices) if a.ndim != 2]
    if flat:
        raise DataError(f"{flat[0]}: multi-frame or colour DICOM is not supported; export the series as one gray file per slice or as NIfTI")
    dr, dc = _pixel_spacing(files[0], ds0)  # between rows, between columns
    if len(slices) > 1:
        steps = np.diff([float(pos(s[0]) @ normal) for s in slices])
        if (steps <= 0).any():
            raise DataError(f"{folder}: two slices of the series share a position along the slice normal")
        step = pos(slices[1][0]) - pos(slices[0][0])
    else:
        step = normal * float(getattr(ds0, "SliceThickness", 1.0))
    lps = np.eye(4)
    lps[:3, 0] = row_cos * dc  # i: along a row = column index
    lps[:3, 1] = col_cos * dr  # j: down a column = row index
    lps[:3, 2] = step
    lps[:3, 3] = pos(slices[0][0])
    affine = LPS_TO_RAS @ lps
    check_affine(affine, folder)
    data = np.stack([np.asarray(a).T for _, a in slices], axis=-1)  # (cols, rows, slices)
    return data, geometry_of(affine, data.shape)
