"""Translation between medimg.v1 protos and the trainer's domain: the only module touching *_pb2."""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.timestamp_pb2 import Timestamp
from medimg.v1 import diagnosis_service_pb2, model_info_pb2
from medimg.v1 import trainer_service_pb2 as pb

from servicekit import classification
from servicekit.backend import ModelInfo
from servicekit.classification import Ranked
from trainer_service.jobs import JobSnapshot, JobState
from trainer_service.names import job_name, project_name
from trainer_service.publish import PublishedModel
from trainer_service.service import ProjectView
from trainer_service.train import EpochMetrics

_STATES = {
    JobState.QUEUED: pb.TRAINING_JOB_STATE_QUEUED,
    JobState.RUNNING: pb.TRAINING_JOB_STATE_RUNNING,
    JobState.SUCCEEDED: pb.TRAINING_JOB_STATE_SUCCEEDED,
    JobState.FAILED: pb.TRAINING_JOB_STATE_FAILED,
    JobState.CANCELLED: pb.TRAINING_JOB_STATE_CANCELLED,
}


def _timestamp(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def to_project(view: ProjectView) -> pb.Project:
    """Returns the Project proto of a project with its example counts."""
    project = view.project
    return pb.Project(
        name=project.name,
        display_name=project.display_name,
        labels=project.labels,
        example_counts=view.example_counts,
        label_counts=to_label_counts(project.labels, view.example_counts),
        create_time=_timestamp(project.create_time),
        latest_training_job=(
            job_name(project.project_id, project.latest_training_job)
            if project.latest_training_job
            else ""
        ),
        published_disease=project.published_disease,
    )


def to_label_counts(labels: Sequence[str], counts: Sequence[int]) -> list[pb.LabelCount]:
    """Returns each label with its number of examples, in the order of the labels."""
    return [
        pb.LabelCount(label=label, example_count=count)
        for label, count in zip(labels, counts, strict=True)
    ]


def _metrics(metrics: EpochMetrics) -> pb.EpochMetrics:
    return pb.EpochMetrics(
        epoch=metrics.epoch,
        total_epochs=metrics.total_epochs,
        loss=metrics.loss,
        accuracy=metrics.accuracy,
        validation_accuracy=metrics.validation_accuracy,
        elapsed_seconds=metrics.elapsed_seconds,
        eta_seconds=metrics.eta_seconds,
    )


def to_job(snapshot: JobSnapshot) -> pb.TrainingJob:
    """Returns the TrainingJob proto of a job at one moment."""
    job = pb.TrainingJob(
        name=snapshot.name,
        state=_STATES[snapshot.state],
        error_message=snapshot.error_message,
        create_time=_timestamp(snapshot.create_time),
    )
    if snapshot.metrics is not None:
        job.latest_metrics.CopyFrom(_metrics(snapshot.metrics))
    if snapshot.end_time is not None:
        job.end_time.CopyFrom(_timestamp(snapshot.end_time))
    return job


def to_prediction(frame_id: int, ranked: Ranked, labels: tuple[str, ...], dropped: int) -> (
    pb.StreamPredictionsResponse
):  # fmt: skip
    """Returns the prediction for one frame, scores highest first (medimg.v1's one order)."""
    order = {label: index for index, label in enumerate(labels)}
    # Ranked is highest first already; equal scores keep the labels' order, as ClassScore says.
    ranked_scores = sorted(ranked.scores, key=lambda item: (-item[1], order.get(item[0], 0)))
    return pb.StreamPredictionsResponse(
        frame_id=frame_id,
        top_label=ranked.top_label,
        scores=[
            diagnosis_service_pb2.ClassScore(label=label, score=score)
            for label, score in ranked_scores
        ],
        dropped_frame_count=dropped,
    )


def published_info(published: PublishedModel) -> ModelInfo:
    """Returns the description of a published model, as DiagnosisService reports it."""
    card = published.model.card
    disease = published.publication.disease
    return ModelInfo(
        name=f"trainer-{disease}",
        version=published.publication.job_id,
        labels=card.labels,
        input_height_px=card.input_size,
        input_width_px=card.input_size,
        input_channels=3,
        backend="embedded",
        demo_model=card.demo_model,
        description=(
            f"Trained with the teachable machine on {sum(card.example_counts)} examples "
            f"({card.project}). {card.warning}"
        ),
    )


def to_model_info(published: PublishedModel) -> model_info_pb2.ModelInfo:
    """Returns the ModelInfo proto of a published model."""
    return classification.to_model_info(
        published_info(published), disease=published.publication.disease
    )


def to_published_model(published: PublishedModel) -> pb.PublishedModel:
    """Returns the ListPublishedModels entry of a published model."""
    publication = published.publication
    return pb.PublishedModel(
        disease=publication.disease,
        project=project_name(publication.project_id),
        training_job=job_name(publication.project_id, publication.job_id),
        publish_time=_timestamp(publication.published),
        model=to_model_info(published),
    )
