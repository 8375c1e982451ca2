"""The bodies of TrainerService's project and example RPCs: request in, response out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from medimg.v1 import trainer_service_pb2 as pb

from servicekit import pagination
from servicekit.errors import InvalidArgument
from trainer_service import convert, names
from trainer_service.service import ProjectView, Trainer


def create_project(trainer: Trainer, request: pb.CreateProjectRequest) -> pb.CreateProjectResponse:
    """Creates a project with its labels."""
    view = trainer.create_project(request.display_name, list(request.labels))
    return pb.CreateProjectResponse(project=convert.to_project(view))


def get_project(trainer: Trainer, request: pb.GetProjectRequest) -> pb.GetProjectResponse:
    """Returns one project with its example counts."""
    view = trainer.get_project(names.parse_project_name(request.name))
    return pb.GetProjectResponse(project=convert.to_project(view))


async def list_projects_page(
    trainer: Trainer, request: pb.ListProjectsRequest
) -> pb.ListProjectsResponse:
    """Returns one page of the projects, newest first, read off the event loop."""
    return list_projects(await asyncio.to_thread(trainer.list_projects), request)


def list_projects(views: Sequence[ProjectView], request: pb.ListProjectsRequest) -> (
    pb.ListProjectsResponse
):  # fmt: skip
    """Returns the page of the projects (newest first) that request asks for.

    Raises:
        InvalidArgument: a negative page size, or a page token this trainer did not make.
    """
    ordered = sorted(views, key=_newest_first)
    chunk, token = pagination.page(ordered, _newest_first, request.page_size, request.page_token)
    return pb.ListProjectsResponse(
        projects=[convert.to_project(view) for view in chunk], next_page_token=token
    )


def _newest_first(view: ProjectView) -> str:
    # These keys sort ascending newest first (microseconds counted down from far in the
    # future); the id orders projects created in the same microsecond.
    micros = round(view.project.create_time * 1_000_000)
    return f"{10**17 - micros:018d}:{view.project.project_id}"


async def delete_project(
    trainer: Trainer, request: pb.DeleteProjectRequest
) -> pb.DeleteProjectResponse:
    """Deletes a project with its examples and models."""
    project_id = names.parse_project_name(request.name)
    await asyncio.to_thread(trainer.delete_project, project_id)
    return pb.DeleteProjectResponse()


async def upload_examples(
    trainer: Trainer, stream: AsyncIterator[pb.UploadExamplesRequest]
) -> pb.UploadExamplesResponse:
    """Stores every example streamed in, or none when one of them is bad.

    Raises:
        InvalidArgument: an empty stream, or a message naming another project than the first.
    """
    requests = aiter(stream)
    try:
        first = await anext(requests)
    except StopAsyncIteration:
        raise InvalidArgument("UploadExamples needs at least one example") from None
    project_id = names.parse_project_name(first.project, field="project")

    async def examples() -> AsyncIterator[tuple[str, bytes]]:
        yield first.label, first.image
        position = 1
        async for request in requests:
            if request.project and request.project != first.project:
                raise InvalidArgument(
                    f"example {position}: every message must name the same project"
                )
            yield request.label, request.image
            position += 1

    accepted, counts = await trainer.upload_examples(project_id, examples())
    labels = trainer.get_project(project_id).project.labels
    return pb.UploadExamplesResponse(
        accepted_count=accepted,
        example_counts=counts,
        label_counts=convert.to_label_counts(labels, counts),
    )
