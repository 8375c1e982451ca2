"""TrainerService through the gateway: each kind of call relayed to the one trainer route."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

import grpc
import grpc.aio
from medimg.v1 import trainer_service_pb2

from gateway import convert
from gateway.forward import Context, pass_through, until_complete
from gateway.router import Router

# Taken from the generated descriptor, which also makes reflection able to describe it.
TRAINER_SERVICE: str = trainer_service_pb2.DESCRIPTOR.services_by_name["TrainerService"].full_name
TRAINER_UNREACHABLE = "the trainer service cannot be reached; try again shortly"
# TrainerService's unary methods, and whether each is safe to retry on UNAVAILABLE: only
# the reads are, since a server's UNAVAILABLE may come after a change was made.
TRAINER_UNARY: dict[str, bool] = {
    "CreateProject": False,
    "GetProject": True,
    "ListProjects": True,
    "DeleteProject": False,
    "GetTrainingJob": True,
    "CancelTrainingJob": False,
    "Publish": False,
    "ListPublishedModels": True,
}
TRAINER_SERVER_STREAMING = ("Train", "WatchTrainingJob")


def trainer_method(name: str) -> str:
    """Returns the full gRPC method path of a TrainerService method."""
    return f"/{TRAINER_SERVICE}/{name}"


def follow_timeout(context: Context) -> float | None:
    """Returns the upstream timeout of a call that lasts as long as its caller wants.

    Train, WatchTrainingJob and StreamPredictions follow a training or a live session,
    so they get the caller's own deadline (none when it set none) rather than a cap;
    they end when the caller cancels, which the proxy passes on.
    """
    remaining = context.time_remaining()
    return None if remaining is None else max(0.0, remaining)


async def unary(router: Router, name: str, request: bytes, context: Context) -> bytes:
    """Returns the trainer's response bytes; reads are retried on UNAVAILABLE."""
    route = router.trainer_route()
    timeout = router.deadline(context.time_remaining())
    try:
        return await router.upstream.unary(
            route, trainer_method(name), request, timeout=timeout, retry=TRAINER_UNARY[name]
        )
    except grpc.aio.AioRpcError as error:
        await pass_through(error, context, TRAINER_UNREACHABLE)


async def publish(router: Router, request: bytes, context: Context) -> bytes:
    """Refuses a disease another route serves, forwards, then learns the trainer's models.

    The refresh after the trainer's answer makes this replica route the model at
    once; the other replicas learn it at their next poll. A refresh that fails is
    logged by the poller and does not undo the publication, which the next poll
    picks up.
    """
    router.check_publishable(convert.publish_disease(request))
    response = await unary(router, "Publish", request, context)
    await router.publications.refresh()
    return response


def server_stream(router: Router, name: str, request: bytes, context: Context) -> (
    AsyncIterator[bytes]
):  # fmt: skip
    """Returns the trainer's responses to a server-streaming call, each as it arrives."""
    call = router.upstream.server_stream(
        router.trainer_route(), trainer_method(name), request, timeout=follow_timeout(context)
    )
    return relay(call, context)


async def upload_examples(
    router: Router, requests: AsyncIterable[bytes], context: Context
) -> bytes:
    """Returns the trainer's UploadExamplesResponse bytes; examples go on one by one.

    A caller that cancels cancels the upstream call rather than completing it, so
    the trainer (which stores all of an upload or nothing) stores nothing.
    """
    route = router.trainer_route()
    messages = aiter(requests)
    first = await anext(messages, None)
    timeout = router.deadline(context.time_remaining(), upload=True)
    try:
        return await router.upstream.stream(
            route,
            trainer_method("UploadExamples"),
            first,
            until_complete(messages, context),
            timeout=timeout,
            retry=False,
        )
    except grpc.aio.AioRpcError as error:
        await pass_through(error, context, TRAINER_UNREACHABLE)


def stream_predictions(router: Router, requests: AsyncIterable[bytes], context: Context) -> (
    AsyncIterator[bytes]
):  # fmt: skip
    """Returns the trainer's predictions to the caller's frames, each as soon as it arrives."""
    call = router.upstream.bidi(
        router.trainer_route(),
        trainer_method("StreamPredictions"),
        until_complete(aiter(requests), context),
        timeout=follow_timeout(context),
    )
    return relay(call, context)


async def relay(
    call: grpc.aio.UnaryStreamCall[bytes, bytes] | grpc.aio.StreamStreamCall[bytes, bytes],
    context: Context,
) -> AsyncIterator[bytes]:
    """Yields the upstream call's responses; it is cancelled as soon as the caller's call ends."""

    # The done callback covers a caller that goes away while grpc is sending a response,
    # when this generator is parked at its yield and would only be closed later.
    def cancel_upstream(_: object) -> None:
        call.cancel()

    # The stubs type the callback as a class, not a Protocol, so no function matches it.
    context.add_done_callback(cancel_upstream)  # type: ignore[arg-type]
    try:
        async for response in call:
            yield response
    except grpc.aio.AioRpcError as error:
        await pass_through(error, context, TRAINER_UNREACHABLE)
    finally:
        call.cancel()
