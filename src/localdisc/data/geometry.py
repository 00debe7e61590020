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

from ..errors import DataError

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
        from nibabel.orientations import inv_ornt_aff

        return self.affine @ inv_ornt_aff(self._to_ras(), self.source_shape)

    def _to_ras(self) -> np.ndarray:
        from nibabel.orientations import axcodes2ornt, ornt_transform

        return ornt_transform(self.ornt, axcodes2ornt("RAS"))


def geometry_of(affine: np.ndarray, shape: tuple[int, ...]) -> Geometry:
    from nibabel.orientations import io_orientation

    affine = np.asarray(affine, dtype=np.float64)
    return Geometry(affine, tuple(int(s) for s in shape[:3]), io_orientation(affine))


def to_localdisc(data: np.ndarray, geom: Geometry) -> np.ndarray:
    """File voxel array (i, j, k) -> localdisc (D, H, W) = (z, y, x) of the RAS-reoriented volume."""
    from nibabel.orientations import apply_orientation

    return np.ascontiguousarray(np.transpose(apply_orientation(data, geom._to_ras()), (2, 1, 0)))


def to_source(array: np.ndarray, geom: Geometry) -> np.ndarray:
    """Inverse of :func:`to_localdisc`: (D, H, W) -> the file's own voxel order (i, j, k)."""
    from nibabel.orientations import apply_orientation, axcodes2ornt, ornt_transform

    ras = np.transpose(array, (2, 1, 0))
    back = ornt_transform(axcodes2ornt("RAS"), geom.ornt)
    out = np.ascontiguousarray(apply_orientation(ras, back))
    if out.shape != geom.source_shape:
        raise DataError(f"prediction of shape {out.shape} does not fit the source volume's {geom.source_shape}")
    return out


def write_nifti(array: np.ndarray, geom: Geometry, path: str | Path, dtype=np.uint8) -> Path:
    """Write a localdisc (D, H, W) array as NIfTI in the source's voxel order with its affine
    (sform and qform), so it overlays the source scan in 3D Slicer, ITK-SNAP, ..."""
    import nibabel as nib

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(to_source(array, geom).astype(dtype), geom.affine)
    img.set_sform(geom.affine, code=1)
    img.set_qform(geom.affine, code=1)
    nib.save(img, str(path))
    return path


# ---------------------------------------------------------------- DICOM


def dicom_series(folder: Path) -> dict[str, list[Path]]:
    """SeriesInstanceUID -> its files, for every .dcm file of ``folder`` (headers only)."""
    import pydicom

    series: dict[str, list[Path]] = {}
    for f in sorted(folder.glob("*.dcm")):
        try:
            ds = pydicom.dcmread(str(f), stop_before_pixels=True)
        except Exception as e:
            raise DataError(f"{f}: unreadable DICOM file ({e})") from e
        series.setdefault(str(getattr(ds, "SeriesInstanceUID", "")), []).append(f)
    return series


def split_series_path(path: str | Path) -> tuple[Path, str | None]:
    """``DIR#UID`` (one series of a folder holding several) -> (DIR, UID); else (path, None)."""
    text = str(path)
    if "#" in text:
        folder, uid = text.rsplit("#", 1)
        if Path(folder).is_dir():
            return Path(folder), uid
    return Path(path), None


def read_dicom(path: str | Path) -> tuple[np.ndarray, Geometry]:
    """A DICOM series (a folder, ``FOLDER#SeriesInstanceUID``, or one file) -> (file-order
    array (i=column, j=row, k=slice), geometry). A folder with several series must name one."""
    import pydicom

    folder, uid = split_series_path(path)
    if folder.is_dir():
        groups = dicom_series(folder)
        if not groups:
            raise DataError(f"{folder}: folder holds no .dcm files")
        if uid is None and len(groups) > 1:
            listing = ", ".join(f"{u} ({len(f)} files)" for u, f in groups.items())
            raise DataError(f"{folder}: holds {len(groups)} DICOM series; name one as {folder}#SERIES_UID: {listing}")
        if uid is not None and uid not in groups:
            raise DataError(f"{folder}: no DICOM series {uid}; found {', '.join(groups)}")
        files = groups[uid] if uid is not None else next(iter(groups.values()))
    else:
        files = [folder]
    slices = []
    for f in files:
        try:
            ds = pydicom.dcmread(str(f))
            arr = ds.pixel_array.astype(np.float32)
        except Exception as e:
            raise DataError(f"{f}: unreadable DICOM file ({e})") from e
        slope, inter = float(getattr(ds, "RescaleSlope", 1.0)), float(getattr(ds, "RescaleIntercept", 0.0))
        slices.append((ds, arr * slope + inter))
    ds0 = slices[0][0]
    iop = np.array([float(v) for v in getattr(ds0, "ImageOrientationPatient", [1, 0, 0, 0, 1, 0])])
    row_cos, col_cos = iop[:3], iop[3:]
    normal = np.cross(row_cos, col_cos)
    pos = lambda ds: np.array([float(v) for v in getattr(ds, "ImagePositionPatient", [0, 0, float(getattr(ds, "InstanceNumber", 0))])])  # noqa: E731
    slices.sort(key=lambda s: float(pos(s[0]) @ normal))
    if slices[0][1].ndim != 2:
        raise DataError(f"{files[0]}: multi-frame DICOM is not supported; export the series as one file per slice or as NIfTI")
    dr, dc = (float(v) for v in getattr(ds0, "PixelSpacing", [1.0, 1.0]))  # between rows, between columns
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
    data = np.stack([np.asarray(a).T for _, a in slices], axis=-1)  # (cols, rows, slices)
    return data, geometry_of(affine, data.shape)
