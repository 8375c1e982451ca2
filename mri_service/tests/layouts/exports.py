"""CD exports (DICOMDIR) and PACS exports (flat folders, with clutter)."""

from __future__ import annotations

import io
import shutil
import struct
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.fileset import FileSet

from mri_service.tests.layouts.base import (
    _README,
    SIEMENS,
    Patient,
    Protocol,
    Source,
)
from mri_service.tests.layouts.tags import (
    _protocol_series,
    _stored,
    all_datasets,
    apply_patient,
    encode,
    load_phases,
    write_zip,
)


def _folder_entries(root: Path, prefix: str) -> list[tuple[str, bytes]]:
    """Returns every file under root as (prefix + relative path, bytes), DICOMDIR first."""
    files = sorted(path for path in root.rglob("*") if path.is_file())
    files.sort(key=lambda path: path.name != "DICOMDIR")
    return [(prefix + path.relative_to(root).as_posix(), path.read_bytes()) for path in files]


def _write_file_set(root: Path, datasets: Sequence[Dataset], file_set_id: str) -> None:
    """Writes datasets as a File-set at root: DICOMDIR plus pydicom's PT/ST/SE/IM tree."""
    file_set = FileSet()
    file_set.ID = file_set_id
    for ds in datasets:
        file_set.add(ds)
    file_set.write(root)


def _cd_study(
    source: Source, protocol: Protocol, patient: Patient | None, t1: bool, localizer: bool
) -> list[list[Dataset]]:
    phases = load_phases(source)
    if patient is not None:
        apply_patient(all_datasets(phases), patient)
    return _protocol_series(phases, protocol, t1=t1, localizer=localizer)


def write_dicomdir_zip(
    source: Source,
    zip_path: Path,
    *,
    protocol: Protocol = SIEMENS,
    patient: Patient | None = None,
    t1: bool = False,
    localizer: bool = False,
    wrap_folder: str | None = None,
    seed: int = 0,
) -> Path:
    """Writes the study as a CD export: DICOMDIR and the File-set pydicom's FileSet writes.

    The tree is PT000000/ST000000/SE00000S/IM00000I (no extension); DICOMDIR holds PATIENT,
    STUDY, SERIES and IMAGE records. Images are added series by series in a shuffled
    order (seed), so IM000000 is not the first slice. Each phase is its own series named
    by protocol (SIEMENS: "t1_fl3d_tra_dynaVIEWS_spair_pre", "..._1st", ...;
    SIEMENS_SAME_NAME: one name for all), numbered and timed as in write_tcia_zip; the
    patient is the source's (the phantom's) unless given.
    """
    series = _cd_study(source, protocol, patient, t1, localizer)
    rng = np.random.default_rng(seed)
    ordered = [datasets[int(i)] for datasets in series for i in rng.permutation(len(datasets))]
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "cd"
        _write_file_set(root, ordered, "MEDIMG_CD")
        entries = _folder_entries(root, f"{wrap_folder}/" if wrap_folder else "")
    return write_zip(zip_path, entries)


def _apple_double() -> bytes:
    """Returns an AppleDouble header, what macOS's zip puts in __MACOSX/ for each file."""
    return struct.pack(">II16sH", 0x00051607, 0x00020000, b"Mac OS X        ", 0)


def _thumbnail(ds: Dataset) -> bytes:
    """Returns an 8-bit JPEG preview of one image, as viewers burn beside the files."""
    values = _stored(ds).astype(np.float32)
    span = max(float(values.max() - values.min()), 1.0)
    pixels = ((values - values.min()) * (255.0 / span)).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def write_pacs_export_zip(
    source: Source,
    zip_path: Path,
    *,
    names: Literal["numbered", "uid"] = "numbered",
    dicomdir: bool = False,
    clutter: bool = True,
    protocol: Protocol = SIEMENS,
    patient: Patient | None = None,
    t1: bool = False,
    localizer: bool = False,
    files_per_folder: int = 7,
    seed: int = 0,
) -> Path:
    """Writes the study as a PACS export to flat, meaningless folders.

    Files of all series are mixed in a shuffled order (seed) and cut into folders of
    files_per_folder: DATA/0001/IM000001, DATA/0001/IM000002, ... (names="numbered") or
    DATA/0001/<SOPInstanceUID> (names="uid"), no extension. Series are tagged as in
    write_dicomdir_zip.

    Args:
        dicomdir: adds a DICOMDIR (written by FileSet, then pointed at the flat files and
            rewritten with FileSet.write(use_existing=True)). Only with numbered names:
            a UID is no valid File ID component.
        clutter: adds what a copied CD zipped on a Mac carries: README.TXT, a JPEG
            thumbnail DATA/0001/THUMB.JPG, .DS_Store, folder entries and an AppleDouble
            __MACOSX/.../._NAME for every file.

    Raises:
        ValueError: dicomdir with UID names, or files_per_folder below 1.
    """
    if files_per_folder < 1:
        raise ValueError("files_per_folder must be at least 1")
    if dicomdir and names == "uid":
        raise ValueError("a DICOMDIR cannot reference UID file names (8 characters at most)")
    series = _cd_study(source, protocol, patient, t1, localizer)
    everything = [ds for datasets in series for ds in datasets]
    order = np.random.default_rng(seed).permutation(len(everything))
    placed: dict[str, Dataset] = {}
    for position, index in enumerate(order):
        ds = everything[int(index)]
        name = f"IM{position + 1:06d}" if names == "numbered" else str(ds.SOPInstanceUID)
        placed[f"DATA/{position // files_per_folder + 1:04d}/{name}"] = ds
    if dicomdir:
        entries = _flat_file_set(placed)
    else:
        entries = [(path, encode(ds)) for path, ds in placed.items()]
    if clutter:
        entries = _with_clutter(entries, everything[len(everything) // 2])
    return write_zip(zip_path, entries)


def _flat_file_set(placed: Mapping[str, Dataset]) -> list[tuple[str, bytes]]:
    """Returns DICOMDIR plus the files at the given paths, the DICOMDIR pointing at them."""
    where = {str(ds.SOPInstanceUID): path for path, ds in placed.items()}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "cd"
        _write_file_set(root, list(placed.values()), "MEDIMG_PACS")
        dicomdir = pydicom.dcmread(root / "DICOMDIR")
        for record in dicomdir.DirectoryRecordSequence:
            if "ReferencedFileID" not in record:
                continue
            target = where[str(record.ReferencedSOPInstanceUIDInFile)]
            (root / target).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(root.joinpath(*record.ReferencedFileID), root / target)
            record.ReferencedFileID = target.split("/")
        for folder in root.glob("PT*"):
            shutil.rmtree(folder)
        # Loaded with file IDs pydicom would not choose, the File-set is staged for a move;
        # use_existing keeps the files where they are and rewrites DICOMDIR's offsets.
        FileSet(dicomdir).write(use_existing=True)
        return _folder_entries(root, "")


def _apple_double_name(name: str) -> str:
    """Returns where macOS's zip puts the resource fork of name: __MACOSX/FOLDER/._BASE."""
    folder, _, base = name.rpartition("/")
    return f"__MACOSX/{folder}/._{base}" if folder else f"__MACOSX/._{base}"


def _parents(name: str) -> list[str]:
    """Returns the folder entries above a zip entry: A/B/C gives A/ and A/B/."""
    parts = name.split("/")[:-1]
    return ["/".join(parts[: depth + 1]) + "/" for depth in range(len(parts))]


def _with_clutter(entries: list[tuple[str, bytes]], sample: Dataset) -> list[tuple[str, bytes]]:
    """Returns entries with the folders, README, thumbnail and macOS litter of a copied CD."""
    folders = sorted({folder for name, _ in entries for folder in _parents(name)})
    files = [
        ("README.TXT", _README.encode("ascii")),
        (".DS_Store", b"\x00\x00\x00\x01Bud1" + bytes(2048)),
        *entries,
        ("DATA/0001/THUMB.JPG", _thumbnail(sample)),
    ]
    mac = [(_apple_double_name(name), _apple_double()) for name, _ in files]
    mac_folders = sorted({"__MACOSX/", *(f"__MACOSX/{folder}" for folder in folders)})
    return [*((folder, b"") for folder in folders), *files, *((f, b"") for f in mac_folders), *mac]
