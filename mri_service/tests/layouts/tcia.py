"""The NBIA Data Retriever's download of Duke-Breast-Cancer-MRI, as TCIA serves it."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
)

from mri_service.tests.layouts.base import (
    _DOWNLOAD_TIMESTAMP,
    _LICENSE,
    DUKE,
    DUKE_COLLECTION,
    DUKE_DOI,
    DUKE_PATIENT,
    FOURTH_PASS,
    TCIA_METADATA_COLUMNS,
    Patient,
    Source,
)
from mri_service.tests.layouts.tags import (
    _fourth_pass,
    _protocol_series,
    all_datasets,
    apply_patient,
    encode,
    load_phases,
    write_zip,
)


def nbia_file_names(datasets: Sequence[Dataset]) -> list[str]:
    """Returns the NBIA Data Retriever's file names of one series' images, in their order.

    Since release 3.6 the retriever names a file ACQUISITION-INSTANCE.dcm: the ordinal of
    its AcquisitionNumber in the series, then of its InstanceNumber within that
    acquisition (a missing value sorts first), the instance left-padded with zeros to at
    least two digits (1-01.dcm ... 1-42.dcm, or 1-001.dcm when one holds 100 or more).
    """

    def key(ds: Dataset, keyword: str) -> tuple[int, int]:
        value = ds.get(keyword)
        return (0, 0) if value is None or value == "" else (1, int(value))

    members: dict[tuple[int, int], list[int]] = {}
    for index, ds in enumerate(datasets):
        members.setdefault(key(ds, "AcquisitionNumber"), []).append(index)
    width = max([2, *(len(str(len(group))) for group in members.values())])
    names = [""] * len(datasets)
    for acquisition, group_key in enumerate(sorted(members), start=1):
        ordered = sorted(members[group_key], key=lambda i: key(datasets[i], "InstanceNumber"))
        for instance, index in enumerate(ordered, start=1):
            names[index] = f"{acquisition}-{instance:0{width}d}.dcm"
    return names


def _path_part(text: str) -> str:
    """Returns text usable as one folder name, as the retriever cleans descriptions."""
    for character in '/\\:*?"<>|':
        text = text.replace(character, "_")
    return text.strip() or "NA"


def _last_digits(uid: str) -> str:
    """Returns the last five digits of a UID, the retriever's folder suffix."""
    return uid.replace(".", "")[-5:]


def _nbia_date(value: str) -> str:
    return f"{value[4:6]}-{value[6:8]}-{value[0:4]}" if len(value) == 8 else "NA"


def _file_size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.2f} MB"
    return f"{size / 1024:.2f} KB"


def _tcia_entries(
    series: Sequence[Sequence[Dataset]],
    *,
    collection: str,
    manifest_folder: str | None,
    windows_locations: bool,
) -> list[tuple[str, bytes]]:
    """Returns the entries of an NBIA download of the series, metadata.csv and LICENSE."""
    prefix = f"{manifest_folder}/" if manifest_folder else ""
    entries: list[tuple[str, bytes]] = []
    rows: list[dict[str, str]] = []
    for datasets in series:
        first = datasets[0]
        study = "-".join(
            (
                _nbia_date(str(first.StudyDate)),
                "NA",
                _path_part(str(first.get("StudyDescription", ""))),
                _last_digits(first.StudyInstanceUID),
            )
        )
        series_folder = "-".join(
            (
                f"{float(first.SeriesNumber):.6f}",
                _path_part(str(first.get("SeriesDescription", ""))),
                _last_digits(first.SeriesInstanceUID),
            )
        )
        folder = "/".join((collection, _path_part(str(first.PatientID)), study, series_folder))
        size = 0
        for name, ds in zip(nbia_file_names(datasets), datasets, strict=True):
            data = encode(ds)
            size += len(data)
            entries.append((f"{prefix}{folder}/{name}", data))
        location = ".\\" + folder.replace("/", "\\") if windows_locations else f"./{folder}"
        rows.append(
            {
                "Series UID": first.SeriesInstanceUID,
                "Collection": collection,
                "3rd Party Analysis": "NO",
                "Data Description URI": DUKE_DOI,
                "Subject ID": str(first.PatientID),
                "Study UID": first.StudyInstanceUID,
                "Study Description": str(first.get("StudyDescription", "")),
                "Study Date": _nbia_date(str(first.StudyDate)),
                "Series Description": str(first.get("SeriesDescription", "")),
                "Manufacturer": str(first.get("Manufacturer", "")),
                "Modality": str(first.Modality),
                "SOP Class Name": UID(first.SOPClassUID).name,
                "SOP Class UID": str(first.SOPClassUID),
                "Number of Images": str(len(datasets)),
                "File Size": _file_size(size),
                "File Location": location,
                "Download Timestamp": _DOWNLOAD_TIMESTAMP,
            }
        )
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=TCIA_METADATA_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(sorted(rows, key=lambda row: row["File Location"]))
    return [
        (f"{prefix}metadata.csv", table.getvalue().encode()),
        (f"{prefix}LICENSE", _LICENSE.encode()),
        *sorted(entries),
    ]


def _deidentified(series: Iterable[Iterable[Dataset]]) -> None:
    """Marks images as TCIA's de-identification does."""
    for datasets in series:
        for ds in datasets:
            ds.PatientIdentityRemoved = "YES"
            ds.DeidentificationMethod = "DCM:113100/113105/113107/113108/113109/113111"
            ds.LongitudinalTemporalInformationModified = "MODIFIED"


def write_tcia_zip(
    source: Source,
    zip_path: Path,
    *,
    patient: Patient | None = None,
    fourth_pass: bool = False,
    t1: bool = False,
    localizer: bool = False,
    collection: str = DUKE_COLLECTION,
    manifest_folder: str | None = None,
    windows_locations: bool = True,
) -> Path:
    """Writes the study as the NBIA Data Retriever downloads Duke-Breast-Cancer-MRI.

    COLLECTION/SUBJECT/01-01-1990-NA-MRI BREAST BILATERAL-NNNNN/3.000000-ax dyn pre-NNNNN/
    1-01.dcm ... (NNNNN: the last five digits of the study's and the series' UID), with
    metadata.csv (TCIA_METADATA_COLUMNS, one row per series) and LICENSE at the top, all
    under manifest_folder when given (the retriever's manifest-NNNN folder).

    The phases are series "ax dyn pre", "ax dyn 1st pass", ... numbered 3, 4, 5, 6 with
    AcquisitionTime, ContentTime and SeriesTime per DYNAMIC_OFFSETS_S, AcquisitionNumber 1
    in each; the subject is DUKE_PATIENT unless patient is given.

    Args:
        fourth_pass: adds "ax dyn 4th pass" (the 3rd pass's pixels, new UIDs, 90 s later).
        t1: adds "ax t1" (series 2): every other pre slice at 1.5 x the rows and columns.
        localizer: adds "3 Plane Loc" (series 1): axial, sagittal and coronal images.
        windows_locations: metadata.csv's File Location with backslashes, as a download
            on Windows writes it, rather than ./A/B.
    """
    phases = load_phases(source)
    apply_patient(all_datasets(phases), patient or DUKE_PATIENT)
    if fourth_pass:
        phases[FOURTH_PASS] = _fourth_pass(phases)
    series = _protocol_series(phases, DUKE, t1=t1, localizer=localizer)
    _deidentified(series)
    entries = _tcia_entries(
        series,
        collection=collection,
        manifest_folder=manifest_folder,
        windows_locations=windows_locations,
    )
    return write_zip(zip_path, entries)
