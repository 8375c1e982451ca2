"""The bodies of the trained models' RPCs: live prediction, publishing, published diagnosis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from medimg.v1 import diagnosis_service_pb2
from medimg.v1 import trainer_service_pb2 as pb

from servicekit import pagination
from servicekit.classifier import flow
from servicekit.classifier.domain import ImageDomain
from servicekit.errors import InvalidArgument
from trainer_service import convert, names, train
from trainer_service.predict import LatestFrameSlot
from trainer_service.publish import PublishedModel
from trainer_service.service import Trainer


async def stream_predictions(
    trainer: Trainer, stream: AsyncIterator[pb.StreamPredictionsRequest]
) -> AsyncIterator[pb.StreamPredictionsResponse]:
    """Predicts the newest frame each time the model is free; older waiting ones drop."""
    requests = aiter(stream)
    try:
        first = await anext(requests)
    except StopAsyncIteration:
        return
    project_id = names.parse_project_name(first.project, field="project")
    model = trainer.latest_model(project_id)
    slot: LatestFrameSlot[tuple[int, bytes]] = LatestFrameSlot()
    slot.put((first.frame_id, first.image))

    async def read() -> None:
        try:
            async for request in requests:
                slot.put((request.frame_id, request.image))
        finally:
            slot.close()

    reader = asyncio.create_task(read())
    try:
        while (taken := await slot.take()) is not None:
            (frame_id, image), dropped = taken
            ranked = await trainer.predict(model, image)
            yield convert.to_prediction(frame_id, ranked, model.card.labels, dropped)
        await reader
    finally:
        reader.cancel()


async def publish(trainer: Trainer, request: pb.PublishRequest) -> pb.PublishResponse:
    """Publishes the project's latest model as a disease, served by the trainer from then on."""
    project_id = names.parse_project_name(request.project, field="project")
    published = await trainer.publish(project_id, request.disease)
    return pb.PublishResponse(model=convert.to_model_info(published))


def list_published_models(
    published: Sequence[PublishedModel], request: pb.ListPublishedModelsRequest
) -> pb.ListPublishedModelsResponse:
    """Returns the page of published (sorted by disease) that request asks for.

    Raises:
        InvalidArgument: a negative page size, or a page token this trainer did not make.
    """
    models, token = pagination.page(published, _disease_of, request.page_size, request.page_token)
    return pb.ListPublishedModelsResponse(
        published_models=[convert.to_published_model(m) for m in models],
        next_page_token=token,
    )


def _disease_of(published: PublishedModel) -> str:
    return published.publication.disease


async def diagnose(
    trainer: Trainer, request: diagnosis_service_pb2.DiagnoseRequest
) -> diagnosis_service_pb2.DiagnoseResponse:
    """Returns the class probabilities of one image by the disease's model, highest first.

    The answer is servicekit.classifier's, as every image classifier's: the published
    model supplies its domain (train.image_domain) and its scores.
    """
    published = trainer.published_model(_disease(request.disease))
    scores = await trainer.scores(published.model, request.image)
    return flow.diagnose_response(_domain(published), scores, convert.published_info(published))


def get_model_info(
    trainer: Trainer, request: diagnosis_service_pb2.GetModelInfoRequest
) -> diagnosis_service_pb2.GetModelInfoResponse:
    """Returns the description of the disease's published model."""
    published = trainer.published_model(_disease(request.disease))
    return flow.model_info_response(_domain(published), convert.published_info(published))


def _domain(published: PublishedModel) -> ImageDomain:
    card = published.model.card
    return train.image_domain(published.publication.disease, card.labels, card.input_size)


def _disease(disease: str) -> str:
    if not disease:
        raise InvalidArgument("disease is required: the trainer serves several published models")
    return disease
