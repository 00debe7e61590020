"""Tiny DICOM files for the reader tests (pydicom writes them; no pixel compression)."""

from __future__ import annotations

import numpy as np


def write_dicom(path, pixels: np.ndarray, position=(0.0, 0.0, 0.0), orientation=(1, 0, 0, 0, 1, 0), series_uid: str = "1.2.3",
                spacing=(0.8, 0.6), number: int = 0, rescale: tuple[float, float] | None = None) -> None:
    """One slice: ``pixels`` (rows, cols) as uint16 at ImagePositionPatient ``position`` with
    ImageOrientationPatient ``orientation`` and PixelSpacing ``spacing`` (between rows, columns)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT image storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID, ds.Modality, ds.InstanceNumber = series_uid, "CT", number
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelSpacing = list(spacing)
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.ImageOrientationPatient = [float(v) for v in orientation]
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
