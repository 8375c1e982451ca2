"""Protobuf messages of medimg.v1 to the web tier's values (web.gateway_client.results)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from medimg.v1 import model_info_pb2, series_analysis_service_pb2, trainer_service_pb2

from web.gateway_client.results import (
    EpochProgress,
    ModelDescription,
    SelectedPhase,
    SkippedFile,
    SliceImage,
    StudySummary,
    TrainerProject,
    TrainingJobState,
    UnusedSeries,
)

KINDS: Final = {
    model_info_pb2.MODEL_KIND_IMAGE_CLASSIFIER: "image",
    model_info_pb2.MODEL_KIND_SERIES_ANALYZER: "series",
}
JOB_STATES: Final = {
    trainer_service_pb2.TRAINING_JOB_STATE_QUEUED: "queued",
    trainer_service_pb2.TRAINING_JOB_STATE_RUNNING: "running",
    trainer_service_pb2.TRAINING_JOB_STATE_SUCCEEDED: "succeeded",
    trainer_service_pb2.TRAINING_JOB_STATE_FAILED: "failed",
    trainer_service_pb2.TRAINING_JOB_STATE_CANCELLED: "cancelled",
}


def slice_image(image: series_analysis_service_pb2.SliceImage) -> SliceImage:
    """Returns where one slice's image is in the study (its DICOM identity)."""
    return SliceImage(
        phase=image.phase,
        sop_instance_uid=image.sop_instance_uid,
        instance_number=image.instance_number if image.HasField("instance_number") else None,
        position_mm=round(image.position_mm, 3) if image.HasField("position_mm") else None,
    )


def study(study: series_analysis_service_pb2.StudySummary) -> StudySummary:
    """Returns what the service read of a study, and what it left out."""
    return StudySummary(
        study_instance_uid=study.study_instance_uid,
        phases=tuple(
            SelectedPhase(
                phase=p.phase,
                series_instance_uid=p.series_instance_uid,
                series_description=p.series_description,
                series_number=p.series_number if p.HasField("series_number") else None,
                temporal_position=p.temporal_position if p.HasField("temporal_position") else None,
                image_count=p.image_count,
            )
            for p in study.phases
        ),
        unused_series=tuple(
            UnusedSeries(
                series_instance_uid=u.series_instance_uid,
                series_description=u.series_description,
                series_number=u.series_number if u.HasField("series_number") else None,
                modality=u.modality,
                image_count=u.image_count,
                reason=u.reason,
            )
            for u in study.unused_series
        ),
        skipped_files=tuple(SkippedFile(f.path, f.reason) for f in study.skipped_files),
        slice_count=study.slice_count,
        ordered_by=study.ordered_by,
        selected_by=study.selected_by,
    )


def description(info: model_info_pb2.ModelInfo) -> ModelDescription:
    """Returns a service's description of its model."""
    return ModelDescription(
        disease=info.disease,
        model_name=info.model_name,
        model_version=info.model_version,
        kind=KINDS.get(info.kind, "unspecified"),
        labels=tuple(info.labels),
        input_height_px=info.input_height_px,
        input_width_px=info.input_width_px,
        input_channels=info.input_channels,
        backend=info.backend,
        demo_model=info.demo_model,
        description=info.description,
    )


def project(project: trainer_service_pb2.Project) -> TrainerProject:
    """Returns a teachable-machine project as the trainer keeps it."""
    return TrainerProject(
        name=project.name,
        display_name=project.display_name,
        labels=tuple(project.labels),
        example_counts=example_counts(project.labels, project.label_counts, project.example_counts),
        latest_training_job=project.latest_training_job,
        published_disease=project.published_disease,
    )


def job_state(job: trainer_service_pb2.TrainingJob) -> TrainingJobState:
    """Returns one state of a training job, with its latest epoch's metrics."""
    metrics = None
    if job.HasField("latest_metrics"):
        m = job.latest_metrics
        metrics = EpochProgress(
            epoch=m.epoch,
            total_epochs=m.total_epochs,
            loss=round(float(m.loss), 6),
            accuracy=probability(m.accuracy),
            validation_accuracy=probability(m.validation_accuracy),
            elapsed_seconds=round(float(m.elapsed_seconds), 3),
            eta_seconds=round(float(m.eta_seconds), 3),
        )
    return TrainingJobState(
        name=job.name,
        state=JOB_STATES.get(job.state, "unspecified"),
        metrics=metrics,
        error_message=job.error_message,
    )


def probability(value: float) -> float:
    """Returns a float32 probability as the nearest short decimal (0.7, not 0.69999998)."""
    return round(float(value), 6)


def example_counts(
    labels: Iterable[str],
    label_counts: Iterable[trainer_service_pb2.LabelCount],
    legacy: Iterable[int],
) -> tuple[int, ...]:
    """Returns the examples of each label, in the labels' order.

    From `label_counts`; from the deprecated parallel `example_counts` when a trainer
    older than label_counts answered.
    """
    counted = {entry.label: entry.example_count for entry in label_counts}
    if not counted:
        return tuple(legacy)
    return tuple(counted.get(label, 0) for label in labels)
