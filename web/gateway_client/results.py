"""What the gateway's calls return to the web tier: plain frozen values, no protobuf."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClassScore:
    """The probability of one class."""

    label: str
    score: float


@dataclass(frozen=True)
class Diagnosis:
    """The gateway's diagnosis of one image, with the request id and the call's duration."""

    disease: str
    top_label: str
    top_score: float
    scores: tuple[ClassScore, ...]
    model_name: str
    model_version: str
    demo_model: bool
    request_id: str
    elapsed_ms: float


@dataclass(frozen=True)
class ModelDescription:
    """The model that serves a disease, as its service describes it."""

    disease: str
    model_name: str
    model_version: str
    kind: str  # "image", "series" or "unspecified"
    labels: tuple[str, ...]
    input_height_px: int
    input_width_px: int
    input_channels: int
    backend: str
    demo_model: bool
    description: str


@dataclass(frozen=True)
class RegisteredModel:
    """One disease the gateway routes to; `model` is None while its service is unreachable."""

    disease: str
    kind: str
    model: ModelDescription | None
    available: bool
    unavailable_reason: str
    replica_count: int


@dataclass(frozen=True)
class SliceScore:
    """One model's probability that a slice shows a finding."""

    model_name: str
    probability: float


@dataclass(frozen=True)
class SliceImage:
    """The DICOM image that shows one slice in one phase, to find it in a PACS or viewer."""

    phase: str  # "pre", "1st_pass", "2nd_pass" or "3rd_pass"
    sop_instance_uid: str
    instance_number: int | None
    position_mm: float | None


@dataclass(frozen=True)
class SliceFinding:
    """The result for one slice of a series, with its image in each phase."""

    slice_index: int
    positive: bool
    scores: tuple[SliceScore, ...]
    images: tuple[SliceImage, ...] = ()


@dataclass(frozen=True)
class SelectedPhase:
    """One acquisition phase the models read: a series, or a temporal position of one."""

    phase: str
    series_instance_uid: str
    series_description: str
    series_number: int | None
    temporal_position: int | None
    image_count: int


@dataclass(frozen=True)
class UnusedSeries:
    """A series of the study that the analysis does not read, and why."""

    series_instance_uid: str
    series_description: str
    series_number: int | None
    modality: str
    image_count: int
    reason: str


@dataclass(frozen=True)
class SkippedFile:
    """A file of the upload that is not part of the study, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class StudySummary:
    """What an upload holds and which of its series the models read (or would read)."""

    study_instance_uid: str = ""
    phases: tuple[SelectedPhase, ...] = ()
    unused_series: tuple[UnusedSeries, ...] = ()
    skipped_files: tuple[SkippedFile, ...] = ()
    slice_count: int = 0
    ordered_by: str = ""  # "position" or "instance_number"
    selected_by: str = ""  # "folders", "series" or "multiphase"


@dataclass(frozen=True)
class SeriesInspection:
    """What InspectSeries found in an upload, without the models; the request id and time."""

    study: StudySummary
    previews: tuple[bytes, ...]  # PNGs of the pre-contrast slices, when asked
    request_id: str
    elapsed_ms: float


@dataclass(frozen=True)
class SeriesAnalysis:
    """The analysis of one series, with the service's stage timings and the request id."""

    disease: str
    positive_slice_indices: tuple[int, ...]
    slices: tuple[SliceFinding, ...]
    slice_count: int
    model_name: str
    model_version: str
    demo_model: bool
    upload_ms: float
    prepare_ms: float
    model_ms: float
    request_id: str
    elapsed_ms: float
    study: StudySummary = StudySummary()
    previews: tuple[bytes, ...] = ()  # PNGs of the pre-contrast slices, when asked
    # The result as DICOM Part 10 files of the analysed study, when asked (dicom_reports):
    # a TID 1500 Comprehensive 3D SR, and a Key Object Selection document naming the
    # flagged slices' images (b"" when no slice is flagged). Both carry the patient's
    # identity as the study does: web.series.deidentify cleans them before they are kept.
    measurement_report: bytes = b""
    key_images: bytes = b""


@dataclass(frozen=True)
class TrainerProject:
    """A teachable-machine project as the trainer keeps it."""

    name: str  # "projects/{project_id}"
    display_name: str
    labels: tuple[str, ...]
    example_counts: tuple[int, ...]
    latest_training_job: str
    published_disease: str


@dataclass(frozen=True)
class EpochProgress:
    """The metrics after one finished epoch."""

    epoch: int
    total_epochs: int
    loss: float
    accuracy: float
    validation_accuracy: float
    elapsed_seconds: float
    eta_seconds: float


@dataclass(frozen=True)
class TrainingJobState:
    """One state of a training job: where it stands and its latest metrics."""

    name: str  # "projects/{project_id}/trainingJobs/{job_id}"
    state: str  # "queued", "running", "succeeded", "failed", "cancelled" or "unspecified"
    metrics: EpochProgress | None
    error_message: str

    @property
    def active(self) -> bool:
        """Tells whether the job may still change (queued or running)."""
        return self.state in ("queued", "running")


@dataclass(frozen=True)
class TrainSettings:
    """How to train: epochs, batch size, learning rate, validation split and seed."""

    epochs: int
    batch_size: int
    learning_rate: float
    validation_split: float
    seed: int


@dataclass(frozen=True)
class UploadReceipt:
    """What an upload of examples stored, and the counts per label after it."""

    accepted_count: int
    example_counts: tuple[int, ...]


@dataclass(frozen=True)
class LivePrediction:
    """The trainer's prediction for one streamed frame."""

    frame_id: int
    top_label: str
    scores: tuple[ClassScore, ...]
    dropped_frame_count: int
