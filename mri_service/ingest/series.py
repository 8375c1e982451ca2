"""Opens an uploaded study (zip or folder) into its checked DCE phases, then loads their planes.

Two passes. The survey reads only the header of every file (`dicom.survey_file`: the
bytes before the pixel data), skips what is not part of the study (clutter, DICOMDIR,
files that are not DICOM), refuses a second patient or study, selects the DCE phases
(`selection`) and orders and checks them (`geometry`), all before any pixel is decoded.
The load then reads the chosen files whole, one at a time, decoding each into model-sized
planes; files of unused series are never read past their header.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from mri_service.errors import SeriesRejected
from mri_service.ingest.archive import Source, open_source
from mri_service.ingest.dicom import Head, read_slice, study_attributes
from mri_service.ingest.geometry import order_phases, refuse_identical_pixels
from mri_service.ingest.layout import folder_hint, is_ignored
from mri_service.ingest.limits import IngestLimits
from mri_service.ingest.redact import Redactor
from mri_service.ingest.selection import SelectionRules, describe, select_dce
from mri_service.ingest.study import InstanceHeader, SkippedFile, Study
from mri_service.ingest.survey import Surveyed, survey_file

DEFAULT_LIMITS = IngestLimits()
DEFAULT_RULES = SelectionRules()


@dataclass(frozen=True)
class LoadedStudy:
    """A study with its planes: phase -> float32 (slices, size, size), and optional previews.

    `attributes` holds the patient and study modules when the caller asked for them (to
    build DICOM results); it is never written anywhere by ingestion.
    """

    study: Study
    planes: dict[str, np.ndarray]
    previews: tuple[np.ndarray, ...]  # the pre phase at the preview size, or ()
    attributes: Dataset | None = None


def open_study(
    source: Path, limits: IngestLimits = DEFAULT_LIMITS, rules: SelectionRules = DEFAULT_RULES
) -> Study:
    """Returns the checked study of a zip or folder, from headers alone (no pixel decoded).

    Raises:
        SeriesRejected: the message names the offending entry, series or attribute.
    """
    redactor = Redactor()
    with redactor.active(), open_source(source, limits) as reader:
        return _survey_study(reader, limits, rules, redactor)[0]


def load_study(
    source: Path,
    input_size: int,
    limits: IngestLimits = DEFAULT_LIMITS,
    rules: SelectionRules = DEFAULT_RULES,
    *,
    preview_size: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    with_attributes: bool = False,
) -> LoadedStudy:
    """Returns the checked study and its model-sized planes, in anatomical order.

    The survey refuses a bad study before any pixel is decoded; then each chosen file is
    read once, decoded and reduced to its planes before the next is read, so at most one
    full-size slice is held at once.

    Args:
        source: a spooled zip or a folder holding one study.
        input_size: side of the model's input planes.
        limits: the caps on the archive and its files.
        rules: how the DCE series are recognised.
        preview_size: when given, the pre phase's planes at this side too (for previews).
        on_progress: called with (slices done, total) after each decoded slice.
        with_attributes: when true, also the patient and study modules of the study (read
            from its first pre-contrast file), for the DICOM objects of its result.

    Raises:
        SeriesRejected: the message names the offending entry, series or attribute.
    """
    if input_size < 1 or (preview_size is not None and preview_size < 1):
        raise ValueError("plane sizes must be positive")
    redactor = Redactor()
    with redactor.active(), open_source(source, limits) as reader:
        study, heads = _survey_study(reader, limits, rules, redactor)
        total, done = len(study.phases) * study.slice_count, 0
        planes: dict[str, np.ndarray] = {}
        previews: list[np.ndarray] = []
        digests: list[list[int]] = []
        attributes: Dataset | None = None
        for index, phase in enumerate(study.phases):
            sizes = [input_size] if preview_size is None or index else [input_size, preview_size]
            stack, phase_digests = [], []
            for header in phase.slices:
                data = reader.read(header.entry)
                if with_attributes and attributes is None:
                    attributes = study_attributes(header.entry, data)
                decoded = read_slice(header.entry, data, limits, sizes, heads.pop(header.entry))
                stack.append(decoded.planes[0])
                previews.extend(decoded.planes[1:])
                phase_digests.append(decoded.digest)
                done += 1
                if on_progress is not None:
                    on_progress(done, total)
            planes[phase.name] = np.stack(stack)
            digests.append(phase_digests)
        refuse_identical_pixels(digests, study.phases)
    return LoadedStudy(study, planes, tuple(previews), attributes)


def inspect_study(
    source: Path,
    limits: IngestLimits = DEFAULT_LIMITS,
    rules: SelectionRules = DEFAULT_RULES,
    *,
    preview_size: int | None = None,
) -> LoadedStudy:
    """Returns the checked study and, with `preview_size`, its pre phase at that side.

    Only the pre phase is decoded, and only for previews; `planes` is empty.

    Raises:
        SeriesRejected: the message names the offending entry, series or attribute.
    """
    redactor = Redactor()
    with redactor.active(), open_source(source, limits) as reader:
        study, heads = _survey_study(reader, limits, rules, redactor)
        previews: list[np.ndarray] = []
        if preview_size is not None:
            for header in study.phases[0].slices:
                data = reader.read(header.entry)
                decoded = read_slice(
                    header.entry, data, limits, [preview_size], heads[header.entry]
                )
                previews.append(decoded.planes[0])
    return LoadedStudy(study, {}, tuple(previews))


def load_series(
    source: Path,
    input_size: int,
    limits: IngestLimits = DEFAULT_LIMITS,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Returns phase -> float32 (slice_count, input_size, input_size): `load_study`'s planes."""
    return load_study(source, input_size, limits, on_progress=on_progress).planes


def _survey_study(
    reader: Source, limits: IngestLimits, rules: SelectionRules, redactor: Redactor
) -> tuple[Study, dict[str, Head]]:
    """Returns the checked study and the parsed heads of its phases' files, by entry."""
    surveyed, skipped = _survey(reader, limits, redactor)
    headers = [found.header for found in surveyed]
    if not headers:
        raise SeriesRejected(
            f"the upload holds no DICOM images ({len(skipped)} other files were skipped); "
            "send a zip of one DICOM study",
            reason="SERIES_LAYOUT",
        )
    study_uid = _one_study(headers)
    selection = select_dce(headers, rules, folder_hint(headers))
    phases, ordered_by = order_phases(selection.phases, limits)
    reported = tuple(SkippedFile(redactor.scrub(s.path), s.reason) for s in skipped)
    study = Study(study_uid, phases, selection.unused, reported, ordered_by, selection.selected_by)
    used = {h.entry for phase in phases for h in phase.slices}
    return study, {f.header.entry: f.head for f in surveyed if f.header.entry in used}


def _survey(
    reader: Source, limits: IngestLimits, redactor: Redactor
) -> tuple[list[Surveyed], list[SkippedFile]]:
    """Returns every DICOM image surveyed and the files skipped, in the upload's order."""
    files = [entry for entry in reader.entries() if not entry.is_dir]
    skipped = [SkippedFile(e.name, "operating-system clutter") for e in files if is_ignored(e.name)]
    files = [entry for entry in files if not is_ignored(entry.name)]
    reader.check_declared(files)
    images: list[Surveyed] = []
    for entry in files:
        read = functools.partial(reader.read, entry.name)
        found = survey_file(entry.name, read, limits, redactor)
        if isinstance(found, SkippedFile):
            skipped.append(found)
        elif not (found.header.study_uid and found.header.series_uid):
            skipped.append(
                SkippedFile(
                    entry.name, "a DICOM file without StudyInstanceUID or SeriesInstanceUID"
                )
            )
        else:
            images.append(found)
    return images, skipped


def _one_study(headers: Sequence[InstanceHeader]) -> str:
    """Returns the one StudyInstanceUID, refusing images of a second patient or study."""
    first = headers[0]
    for header in headers:
        if header.patient_key != first.patient_key:
            raise SeriesRejected(
                f"the upload holds images of more than one patient: "
                f"{describe(header.series_number, header.series_description)} "
                "belongs to another patient than "
                f"{describe(first.series_number, first.series_description)}; send one study",
                reason="SERIES_MULTIPLE_PATIENTS",
            )
    for header in headers:
        if header.study_uid != first.study_uid:
            raise SeriesRejected(
                f"the upload holds more than one study: "
                f"{describe(header.series_number, header.series_description)} "
                "belongs to another study than "
                f"{describe(first.series_number, first.series_description)}; send one study",
                reason="SERIES_MULTIPLE_STUDIES",
            )
    return first.study_uid
