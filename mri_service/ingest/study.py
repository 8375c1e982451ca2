"""What ingestion learns of an uploaded study: each file's header, the phases chosen, what was left.

Plain data, no pixels and no patient data: the patient is known only by a one-way key of
PatientID, enough to tell two patients apart and nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass

from mri_service.domain import position_along_normal

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"


@dataclass(frozen=True)
class InstanceHeader:
    """One DICOM file's identity, geometry and timing, read from its header alone."""

    entry: str  # path inside the upload
    sop_class_uid: str
    sop_instance_uid: str
    modality: str
    study_uid: str
    series_uid: str
    series_number: int | None
    series_description: str
    patient_key: str  # a one-way key of PatientID; "" when the header has none
    frame_of_reference_uid: str
    image_type: tuple[str, ...]
    rows: int | None
    columns: int | None
    frames: int
    pixel_spacing: tuple[float, ...] | None
    orientation: tuple[float, ...] | None  # ImageOrientationPatient
    position: tuple[float, ...] | None  # ImagePositionPatient
    instance_number: int | None
    acquisition_number: int | None
    temporal_position: int | None  # TemporalPositionIdentifier
    trigger_time_ms: float | None
    acquisition_time_s: float | None  # seconds since midnight
    content_time_s: float | None
    series_time_s: float | None

    @property
    def folder(self) -> str:
        """Returns the folder the file sits in, "" at the top of the upload."""
        return self.entry.rsplit("/", 1)[0] if "/" in self.entry else ""


@dataclass(frozen=True)
class SkippedFile:
    """A file of the upload that is not part of the study, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class UnusedSeries:
    """A series of the study that the models do not read, and why."""

    series_uid: str
    description: str
    number: int | None
    modality: str
    image_count: int
    reason: str


@dataclass(frozen=True)
class Phase:
    """One acquisition phase the models read, its slices in anatomical order."""

    name: str  # domain.PHASES
    series_uid: str
    description: str
    number: int | None
    temporal_position: int | None  # within a multiphase series, from 1; None for its own series
    slices: tuple[InstanceHeader, ...]

    def position_mm(self, index: int) -> float | None:
        """Returns slice index's position along the slice normal, None without geometry."""
        header = self.slices[index]
        if header.orientation is None or header.position is None:
            return None
        return position_along_normal(header.orientation, header.position)


@dataclass(frozen=True)
class Study:
    """A validated study: the four phases paired slice by slice, and what was not used."""

    study_uid: str
    phases: tuple[Phase, ...]  # in domain.PHASES order, slices paired by index
    unused: tuple[UnusedSeries, ...]
    skipped: tuple[SkippedFile, ...]
    ordered_by: str  # "position" or "instance_number"
    selected_by: str  # "folders", "series" or "multiphase"

    @property
    def slice_count(self) -> int:
        """Returns the number of slices of each phase (equal in all)."""
        return len(self.phases[0].slices)

    def phase(self, name: str) -> Phase:
        """Returns one phase by name."""
        for phase in self.phases:
            if phase.name == name:
                return phase
        raise KeyError(name)
