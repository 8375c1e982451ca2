"""Websockets of the teach pages: training progress and live prediction.

Both authenticate before accepting (anonymous: closed with 4401, never accepted) and
serve only the owner's project (else 4404); AllowedHostsOriginValidator in the ASGI app
refuses other origins before either runs. A socket whose channel layer goes away (Redis
restarting) is closed with 1013, "try again later", and the page reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any, Final

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from web.gateway_client import GatewayError, PredictionStream, TrainingJobState, get_gateway
from web.teach import selectors, services
from web.teach.forms import TrainSettingsForm
from web.teach.models import TeachProject
from web.teach.relay import (
    LAYER_ERRORS,
    error_json,
    iterate_in_thread,
    job_json,
    relaying,
    start_relay,
)

if TYPE_CHECKING:
    from web.accounts.models import User

CLOSE_UNAUTHENTICATED: Final = 4401
CLOSE_NOT_FOUND: Final = 4404
CLOSE_BAD_FRAME: Final = 4400
CLOSE_TOO_BIG: Final = 1009  # RFC 6455: message too big
CLOSE_FAILED: Final = 1011
CLOSE_TRY_AGAIN: Final = 1013  # RFC 6455: try again later
# Commands on the training socket are small JSON objects.
MAX_COMMAND_BYTES: Final = 16 * 1024
IMAGE_SIGNATURES: Final = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")

logger = logging.getLogger(__name__)


async def _owned_project(user: User, project_id: uuid.UUID) -> TeachProject | None:
    get = database_sync_to_async(selectors.teach_project_get)
    project: TeachProject | None = await get(user=user, project_id=project_id)
    return project


class _ProjectSocket(AsyncWebsocketConsumer):  # type: ignore[misc]  # channels is untyped
    """Accepts only the signed-in owner of the project in the URL."""

    project: TeachProject

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Channels reads the socket's channel from the layer all along: with Redis away
        # that read raises, and the consumer would end in a traceback, the page seeing an
        # abnormal close. A clean 1013 instead; the page reconnects with its backoff and
        # gets the current state on connect.
        try:
            await super().__call__(scope, receive, send)
        except LAYER_ERRORS as error:
            logger.warning(
                "websocket %s: the channel layer is unreachable (%s); closing with %d",
                scope.get("path", "?"),
                error,
                CLOSE_TRY_AGAIN,
            )
            with contextlib.suppress(Exception):
                await self.disconnect(CLOSE_TRY_AGAIN)
            with contextlib.suppress(Exception):  # the socket may be gone already
                await send({"type": "websocket.close", "code": CLOSE_TRY_AGAIN})

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        project = await _owned_project(user, self.scope["url_route"]["kwargs"]["pk"])
        if project is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.project = project
        await self.accept()
        await self.opened()

    async def opened(self) -> None:
        """Runs once the socket is accepted."""

    async def send_json(self, content: dict[str, Any]) -> None:
        """Sends one JSON message."""
        await self.send(text_data=json.dumps(content))

    async def refuse(self, *, code: str, message: str, close_code: int) -> None:
        """Says why, then closes the socket."""
        await self.send_json({"type": "error", "error": {"code": code, "message": message}})
        await self.close(code=close_code)


class TrainingConsumer(_ProjectSocket):
    """Starts, follows and cancels a project's training; every event goes to all its tabs.

    In: {"action": "train", "settings": {...}} or {"action": "cancel"}.
    Out: {"type": "job", "job": {...}} for each event, {"type": "error", "error": {...}}.
    """

    async def opened(self) -> None:
        await self.channel_layer.group_add(self.project.group_name, self.channel_name)
        if not self.project.latest_job:
            await self.send_json({"type": "job", "job": None})
            return
        try:
            job = await asyncio.to_thread(
                get_gateway().get_training_job, name=self.project.latest_job
            )
        except GatewayError as error:
            await self.send_json({"type": "error", "error": error_json(error)})
            return
        await self.send_json({"type": "job", "job": job_json(job)})
        if job.active and not relaying(self.project.group_name):
            events = get_gateway().watch_training_job(name=job.name)
            start_relay(group=self.project.group_name, events=events, reply_channel=None)

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "project"):
            # Redis away: nothing to discard from (its restart emptied the groups), and
            # a stale entry expires with the layer's group_expiry.
            with contextlib.suppress(*LAYER_ERRORS):
                await self.channel_layer.group_discard(self.project.group_name, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        raw = text_data if text_data is not None else (bytes_data or b"").decode(errors="replace")
        if len(raw.encode()) > MAX_COMMAND_BYTES:
            await self.refuse(
                code="MESSAGE_TOO_LARGE",
                message="Commands are small JSON objects.",
                close_code=CLOSE_TOO_BIG,
            )
            return
        try:
            content = json.loads(raw)
        except ValueError:
            content = None
        action = content.get("action") if isinstance(content, dict) else None
        if action == "train":
            await self.train(content.get("settings"))
        elif action == "cancel":
            await self.cancel()
        else:
            await self.send_json(
                {"type": "error", "error": {"code": "UNKNOWN_ACTION", "message": "Unknown action."}}
            )

    async def train(self, given: Any) -> None:
        """Validates the settings, starts a Train stream and relays it to the group."""
        form = TrainSettingsForm.from_message(given)
        if not form.is_valid():
            errors = {name: [str(e) for e in errs] for name, errs in form.errors.items()}
            message = "Check the training settings."
            await self.send_json(
                {
                    "type": "error",
                    "error": {"code": "INVALID_SETTINGS", "message": message, "fields": errors},
                }
            )
            return
        project = self.project
        events = get_gateway().train(project=project.trainer_name, settings=form.train_settings())

        async def remember(job: TrainingJobState) -> None:
            if job.name != project.latest_job:
                await database_sync_to_async(services.teach_job_started)(
                    project=project, job_name=job.name
                )

        start_relay(
            group=project.group_name,
            events=events,
            reply_channel=self.channel_name,
            on_event=remember,
        )

    async def cancel(self) -> None:
        """Cancels the project's newest job (started from any tab or process)."""
        await database_sync_to_async(self.project.refresh_from_db)(fields=["latest_job"])
        if not self.project.latest_job:
            await self.send_json(
                {"type": "error", "error": {"code": "NO_JOB", "message": "Nothing is training."}}
            )
            return
        try:
            job = await asyncio.to_thread(
                get_gateway().cancel_training_job, name=self.project.latest_job
            )
        except GatewayError as error:
            await self.send_json({"type": "error", "error": error_json(error)})
            return
        await self.channel_layer.group_send(
            self.project.group_name, {"type": "training.event", "job": job_json(job)}
        )

    async def training_event(self, event: dict[str, Any]) -> None:
        """Forwards one event of the group to this socket."""
        await self.send_json({"type": "job", "job": event["job"]})

    async def training_error(self, event: dict[str, Any]) -> None:
        """Forwards a failed training call to this socket."""
        await self.send_json({"type": "error", "error": event["error"]})


class PredictionConsumer(_ProjectSocket):
    """Classifies webcam frames live with the project's latest model.

    In: binary messages, each one JPEG or PNG frame. Out: {"type": "prediction", ...} per
    frame classified. One frame is in flight at a time; a frame arriving meanwhile waits,
    replacing any older waiting one, so predictions never lag behind the camera. Frames
    above WEB_TEACH_MAX_FRAMES_PER_SECOND are dropped and counted; one above
    WEB_TEACH_MAX_FRAME_BYTES closes the socket with 1009 after an error message.
    """

    stream: PredictionStream | None = None
    reader: asyncio.Task[None] | None = None

    async def opened(self) -> None:
        self.max_bytes: int = settings.WEB_TEACH_MAX_FRAME_BYTES
        self.max_per_second: int = settings.WEB_TEACH_MAX_FRAMES_PER_SECOND
        self.next_frame_id = 0
        self.in_flight: tuple[int, float] | None = None  # frame id and when it was sent
        self.waiting: bytes | None = None
        self.replaced = 0
        self.over_rate = 0
        self.trainer_dropped = 0
        self.window_start = time.monotonic()
        self.window_count = 0
        self.stream = get_gateway().stream_predictions(project=self.project.trainer_name)
        self.reader = asyncio.create_task(self.read_predictions(self.stream))
        await self.send_json({"type": "ready", "labels": list(self.project.labels)})

    async def disconnect(self, code: int) -> None:
        self.end_stream()

    def end_stream(self) -> None:
        """Ends the gRPC stream and its reader (idempotent)."""
        if self.stream is not None:
            self.stream.close()
            self.stream = None
        if self.reader is not None and self.reader is not asyncio.current_task():
            self.reader.cancel()
        self.reader = None

    async def refuse(self, *, code: str, message: str, close_code: int) -> None:
        self.end_stream()
        await super().refuse(code=code, message=message, close_code=close_code)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        frame = bytes_data if bytes_data is not None else (text_data or "").encode()
        if len(frame) > self.max_bytes:
            await self.refuse(
                code="FRAME_TOO_LARGE",
                message=f"A frame may be at most {self.max_bytes} bytes.",
                close_code=CLOSE_TOO_BIG,
            )
            return
        if not self.within_rate():
            self.over_rate += 1
            return
        if bytes_data is None or not frame.startswith(IMAGE_SIGNATURES):
            await self.send_json(
                {
                    "type": "error",
                    "error": {"code": "FRAME_INVALID", "message": "Send JPEG or PNG frames."},
                }
            )
            return
        if self.in_flight is not None:
            if self.waiting is not None:
                self.replaced += 1
            self.waiting = frame
            return
        self.send_frame(frame)

    def within_rate(self) -> bool:
        """Counts a frame in the current one-second window; tells whether it is allowed."""
        now = time.monotonic()
        if now - self.window_start >= 1.0:
            self.window_start, self.window_count = now, 0
        self.window_count += 1
        return self.window_count <= self.max_per_second

    def send_frame(self, frame: bytes) -> None:
        """Sends one frame to the trainer and marks it in flight."""
        if self.stream is None:
            return
        self.next_frame_id += 1
        self.in_flight = (self.next_frame_id, time.monotonic())
        self.stream.send(frame_id=self.next_frame_id, image=frame)

    async def read_predictions(self, stream: PredictionStream) -> None:
        """Sends each prediction to the socket, then the waiting frame to the trainer."""
        try:
            async for prediction in iterate_in_thread(stream):
                sent_at = self.in_flight[1] if self.in_flight else time.monotonic()
                self.in_flight = None
                self.trainer_dropped += prediction.dropped_frame_count
                await self.send_json(
                    {
                        "type": "prediction",
                        "frame_id": prediction.frame_id,
                        "top_label": prediction.top_label,
                        "scores": [{"label": s.label, "score": s.score} for s in prediction.scores],
                        "latency_ms": round((time.monotonic() - sent_at) * 1000, 1),
                        "dropped": {
                            "replaced": self.replaced,
                            "over_rate": self.over_rate,
                            "trainer": self.trainer_dropped,
                        },
                    }
                )
                if self.waiting is not None:
                    frame, self.waiting = self.waiting, None
                    self.send_frame(frame)
        except GatewayError as error:
            close_code = CLOSE_BAD_FRAME if error.http_status == 400 else 4000 + error.http_status
            await self.refuse(
                code=error.code,
                message=error.message,
                close_code=close_code if close_code < 5000 else CLOSE_FAILED,
            )
