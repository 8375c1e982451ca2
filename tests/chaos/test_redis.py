"""Redis restarted on real processes: during a Celery series job, during a training's websocket.

Redis runs without persistence (tests/support/redis.py), as production may: a restart
loses the queued Celery messages, the unacknowledged ones and the channel groups. What
must hold is what web/README.md promises ("Series jobs", "Teach pages"): the job rows
are the queue, so every job still ends done once; a training page reconnects and
follows the training to its end.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import connect

from mri_service.phantom import PhantomSpec, generate_series, write_series_zip
from mri_service.settings import DEFAULT_MODEL_DIR
from tests.bench.web_load import WebDatabase, manage, start_web, web_env
from tests.chaos.conftest import record
from tests.support.processes import (
    ROOT,
    Process,
    free_port,
    start_gateway,
    start_mri,
    start_trainer,
    wait_until_serving,
)
from tests.support.redis import RedisServer

pytestmark = pytest.mark.slow

DOWN_S = 2.5
JOBS_DONE_WITHIN_S = 120.0
# 64 slices of 256 px: one job takes about 4 s on two cores, long enough to span the outage.
SLICES = 64
EMAIL = "chaos@example.com"

QUEUE_JOBS = f"""
import io, uuid
from web.accounts.models import User
from web.series import services
user = User.objects.create_user(email={EMAIL!r}, password=uuid.uuid4().hex, name="Chaos",
                                email_results=False)
data = open(ZIP_PATH, "rb").read()
for _ in range(2):
    print(services.series_job_create(user=user, upload=io.BytesIO(data), size=len(data)).pk.hex)
"""
# Uploads one more once Redis refuses connections: the web tier cannot send its message.
QUEUE_JOB_WHILE_DOWN = f"""
import io, socket, time
from web.accounts.models import User
from web.series import services
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        socket.create_connection(("127.0.0.1", REDIS_PORT), timeout=0.2).close()
    except OSError:
        break
    time.sleep(0.02)
data = open(ZIP_PATH, "rb").read()
user = User.objects.get(email={EMAIL!r})
started = time.monotonic()
print(services.series_job_create(user=user, upload=io.BytesIO(data), size=len(data)).pk.hex)
print("QUEUED_IN", time.monotonic() - started)
"""
# An upload that queues a job while Redis is down must answer about as fast as ever: the
# row is the queue, the message can wait for the sweep.
QUEUED_WITHIN_S = 5.0
JOB_ID = re.compile(r"^[0-9a-f]{32}$", re.MULTILINE)


def script(template: str, **values: object) -> str:
    """Returns a `manage.py shell` script with its placeholders replaced by the values' reprs."""
    for name, value in values.items():
        template = template.replace(name, repr(value))
    return template


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, which the scenario kills and starts again."""
    folder = tmp_path / "redis"
    folder.mkdir()
    server = RedisServer(folder)
    server.start()
    yield server
    server.stop()


def celery(name: str, env: dict[str, str], *args: str) -> Process:
    """Starts `celery -A web.config.celery ARGS` (a worker or beat) with its log in a file."""
    child_env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT), **env}
    descriptor, log_name = tempfile.mkstemp(prefix=f"medimg-{name}-", suffix=".log")
    with open(descriptor, "wb") as log_file:
        popen = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "web.config.celery", *args],
            cwd=ROOT,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    return Process(name, 0, popen, Path(log_name), child_env)


@dataclass(frozen=True)
class JobRow:
    """What the scenario reads of one series job's row."""

    status: str
    stage: str
    attempts: int
    retries: int
    slice_count: int
    thumbnail_count: int
    sr_bytes: int
    error_code: str


def job_rows(database: Path) -> dict[str, JobRow]:
    """Reads every series job's row straight from the web tier's SQLite file."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10) as connection:
        rows = connection.execute(
            "SELECT id, status, stage, attempts, retries, slice_count, thumbnail_count, "
            "sr_bytes, error_code FROM series_seriesjob"
        ).fetchall()
    return {str(row[0]).replace("-", ""): JobRow(*row[1:]) for row in rows}


def wait_rows(
    database: Path, until: Callable[[dict[str, JobRow]], bool], timeout_s: float
) -> dict[str, JobRow]:
    """Polls the rows until `until(rows)` holds or the time is up; returns the last rows."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = job_rows(database)
        if until(rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def shell(env: dict[str, str], code: str) -> subprocess.Popen[str]:
    """Starts `manage.py shell -c CODE` in the web tier's environment; its output is piped."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "web" / "manage.py"), "shell", "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.skipif(
    not (DEFAULT_MODEL_DIR / "model_card.json").is_file(),
    reason="mri_service/models/mri-demo is absent: this scenario runs the shipped models",
)
def test_redis_restarted_during_celery_series_jobs_loses_none_and_runs_none_twice(
    redis: RedisServer, tmp_path: Path
) -> None:
    """A job running, one queued, one uploaded while Redis is down: each ends done, once.

    The real worker and beat (as k8s/base/web-worker.yaml runs them), the real gateway
    and MRI service. Redis comes back empty: the queued job's message and the running
    one's unacknowledged copy are gone, and the third was never sent.
    """
    spool = tmp_path / "spool"
    spool.mkdir()
    mri = start_mri(spool, timeout=90)
    gateway = start_gateway(f"mri=series@{mri.address}", tmp_path / "gateway")
    database = tmp_path / "db.sqlite3"
    env = {
        **web_env(WebDatabase(f"sqlite:///{database}", "SQLite"), gateway, tmp_path),
        "REDIS_URL": redis.url,
        "WEB_SERIES_WORKER": "celery",
        "WEB_LOG_LEVEL": "INFO",
    }
    zip_path = write_series_zip(
        generate_series(PhantomSpec(slices=SLICES, size=256, lesion=True, seed=7)),
        tmp_path / "case.zip",
    )
    started: list[Process] = []
    late: subprocess.Popen[str] | None = None
    try:
        manage(env, "migrate", "--no-input")
        worker = celery("celery-worker", env, "worker", "--loglevel=INFO", "--concurrency=1")
        beat = celery("celery-beat", env, "beat", "--loglevel=INFO", f"--schedule={tmp_path}/b")
        started += [worker, beat]
        submitted_at = time.monotonic()
        job_ids = JOB_ID.findall(
            manage(env, "shell", "-c", script(QUEUE_JOBS, ZIP_PATH=str(zip_path)))
        )
        late = shell(
            env, script(QUEUE_JOB_WHILE_DOWN, ZIP_PATH=str(zip_path), REDIS_PORT=redis.port)
        )
        rows = wait_rows(database, lambda r: any(row.status == "running" for row in r.values()), 90)
        at_kill = {pk: rows[pk].status for pk in job_ids}
        redis.kill()
        down_at = time.monotonic()
        printed, _ = late.communicate(timeout=60)
        time.sleep(max(DOWN_S - (time.monotonic() - down_at), 0))
        redis.start()
        back_at = time.monotonic()
        down_s = back_at - down_at
        job_ids += JOB_ID.findall(printed)
        queued_in = re.search(r"^QUEUED_IN (\S+)$", printed, re.MULTILINE)
        queued_in_s = float(queued_in[1]) if queued_in else float("inf")
        at_kill.update({pk: "sent while down" for pk in job_ids if pk not in at_kill})
        rows = wait_rows(
            database,
            lambda r: len(r) == 3 and all(row.status in ("done", "failed") for row in r.values()),
            JOBS_DONE_WITHIN_S,
        )
        back_s, total_s = time.monotonic() - back_at, time.monotonic() - submitted_at
        worker_alive = worker.popen.poll() is None
    finally:
        if late is not None and late.poll() is None:
            late.kill()
            late.wait()
        for process in reversed(started):
            process.terminate()
        gateway.terminate()
        mri.terminate()
    log = worker.log()
    # The result of each run: its row, its thumbnails, and the one "done" line of its worker.
    done_lines = {pk: log.count(f"series job {uuid.UUID(pk)} done") for pk in job_ids}
    thumbnails = {
        pk: len(list((tmp_path / "media" / "series" / "thumbnails" / pk).iterdir()))
        if (tmp_path / "media" / "series" / "thumbnails" / pk).is_dir()
        else 0
        for pk in job_ids
    }
    complete = [
        pk
        for pk in job_ids
        if pk in rows
        and rows[pk].status == "done"
        and rows[pk].slice_count == SLICES
        and thumbnails[pk] == SLICES
        and rows[pk].sr_bytes > 0
    ]
    lost = [pk for pk in job_ids if pk not in rows or rows[pk].status != "done"]
    twice = [pk for pk in job_ids if done_lines[pk] > 1]
    runs = ", ".join(f"{at_kill[pk]} {rows[pk].attempts if pk in rows else 0}" for pk in job_ids)
    held = (
        len(job_ids) == 3
        and len(complete) == 3
        and not twice
        and worker_alive
        and queued_in_s < QUEUED_WITHIN_S
    )
    record(
        f"Redis restarted ({DOWN_S:.1f} s down, no persistence) under 3 Celery series jobs",
        f"down {down_s:.1f} s; the upload meanwhile queued in {queued_in_s:.1f} s; "
        f"{len(complete)}/3 done with their results "
        f"{back_s:.0f} s after Redis was back ({total_s:.0f} s in all); runs of each: {runs}; "
        f"{len(lost)} lost, {len(twice)} recorded twice; worker {'up' if worker_alive else 'DEAD'}",
        held,
    )
    assert len(job_ids) == 3, (job_ids, printed)
    assert queued_in_s < QUEUED_WITHIN_S, printed
    assert not lost, ({pk: rows.get(pk) for pk in lost}, log[-5000:])
    assert len(complete) == 3, (rows, thumbnails)
    assert not twice, done_lines
    assert worker_alive, log[-5000:]


# --- the training's websocket ---------------------------------------------------------------

# About 0.07 to 0.3 s an epoch on two cores: Redis, killed at epoch 2, is back long before the end.
TRAIN = {"epochs": 150, "batch_size": 2, "learning_rate": 0.01, "validation_split": 0.25, "seed": 7}
KILL_AT_EPOCH = 2
TRAINING_WITHIN_S = 150.0
# The page's backoff (web/teach/static/teach/training.js): 1 s, doubling, at most 15 s.
RETRY_FIRST_S, RETRY_MAX_S = 1.0, 15.0
# With no event for this long while the training runs, the follower counts itself stuck.
SILENT_S = 15.0
CLEAN_CLOSES = {1013}  # what the consumer closes with when its channel layer is away

CREATE_PROJECT = f"""
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from trainer_service.demo_images import demo_images
from web.accounts.models import User
from web.teach import services
user = User.objects.create_user(email={EMAIL!r}, password="unused-" + "x" * 20, name="Chaos",
                                email_results=False)
project = services.teach_project_create(user=user, display_name="Shapes",
                                        labels=["circle", "square"])
for index, label in enumerate(project.labels):
    files = [SimpleUploadedFile(f"{{i}}.jpg", image, content_type="image/jpeg")
             for i, image in enumerate(demo_images(index, 12, seed=3))]
    services.teach_examples_upload(project=project, label=label, uploads=files, max_files=50)
client = Client(HTTP_HOST="127.0.0.1")
client.force_login(user)
print("PROJECT", project.pk)
print("SESSION", client.cookies["sessionid"].value)
"""


@dataclass
class Follower:
    """What a page following one training saw: every connection, drop and job event."""

    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    opened_at: list[float] = field(default_factory=list)
    # How each connection ended: a close code, 1006 when it dropped without one, or 0
    # when the handshake itself failed.
    closes: list[int] = field(default_factory=list)
    stuck: bool = False

    @property
    def last(self) -> dict[str, Any] | None:
        """Returns the newest job state seen."""
        return self.events[-1][1] if self.events else None


def follow_training(
    url: str,
    headers: dict[str, str],
    *,
    on_epoch: Callable[[int], None],
    deadline: float,
) -> Follower:
    """Trains over the socket and follows it as training.js does, reconnecting on every close.

    A reconnection waits RETRY_FIRST_S, doubling up to RETRY_MAX_S, reset once a socket
    opens. Ends with the first inactive job state, at `deadline`, or when no event came
    for SILENT_S while the job was active (a page left showing stale progress).
    """
    seen = Follower()
    retry_s, started = RETRY_FIRST_S, False
    while time.monotonic() < deadline:
        try:
            socket = connect(url, additional_headers=headers, open_timeout=10)
        except (OSError, InvalidHandshake, TimeoutError):
            seen.closes.append(0)
            time.sleep(retry_s)
            retry_s = min(retry_s * 2, RETRY_MAX_S)
            continue
        seen.opened_at.append(time.monotonic())
        retry_s = RETRY_FIRST_S
        with socket:
            try:
                if not started:
                    socket.send(json.dumps({"action": "train", "settings": TRAIN}))
                    started = True
                while time.monotonic() < deadline:
                    message = json.loads(socket.recv(timeout=SILENT_S))
                    if message["type"] != "job" or message["job"] is None:
                        continue
                    job = message["job"]
                    seen.events.append((time.monotonic(), job))
                    if job["metrics"]:
                        on_epoch(job["metrics"]["epoch"])
                    if not job["active"]:
                        return seen
            except TimeoutError:
                seen.stuck = True
                return seen
            except ConnectionClosed as closed:
                seen.closes.append(closed.rcvd.code if closed.rcvd else 1006)
        time.sleep(retry_s)
        retry_s = min(retry_s * 2, RETRY_MAX_S)
    return seen


def test_redis_restarted_during_a_training_the_page_reconnects_and_follows_it_to_its_end(
    redis: RedisServer, tmp_path: Path
) -> None:
    """The channel layer's Redis killed at epoch 3, back 2.5 s later: the follower sees it end.

    The real web process (uvicorn, channels-redis on REDIS_URL), the real gateway and
    trainer, and a websocket client that behaves as the training page does.
    """
    trainer_port = free_port()
    gateway = start_gateway(f"trainer=trainer@127.0.0.1:{trainer_port}", tmp_path / "gateway")
    trainer = start_trainer(port=trainer_port, data_dir=tmp_path / "trainer")
    database = tmp_path / "db.sqlite3"
    env = {
        **web_env(WebDatabase(f"sqlite:///{database}", "SQLite"), gateway, tmp_path),
        "REDIS_URL": redis.url,
        "WEB_SERIES_WORKER": "off",
        "WEB_LOG_LEVEL": "INFO",
    }
    web: Process | None = None
    restart: list[float] = []
    killer: threading.Thread | None = None

    def restart_redis() -> None:
        restart.append(redis.restart(down_s=DOWN_S))
        restart.append(time.monotonic())

    def on_epoch(epoch: int) -> None:
        nonlocal killer
        if epoch >= KILL_AT_EPOCH and killer is None:
            killer = threading.Thread(target=restart_redis, name="redis-restart")
            killer.start()

    try:
        wait_until_serving(trainer, timeout=90)
        manage(env, "migrate", "--no-input")
        printed = manage(env, "shell", "-c", CREATE_PROJECT)
        project = re.search(r"^PROJECT (\S+)$", printed, re.MULTILINE)
        session = re.search(r"^SESSION (\S+)$", printed, re.MULTILINE)
        assert project and session, printed
        web = start_web(env)
        origin = f"http://127.0.0.1:{web.port}"
        started = time.monotonic()
        seen = follow_training(
            f"ws://127.0.0.1:{web.port}/ws/teach/{project[1]}/training/",
            {"Cookie": f"sessionid={session[1]}", "Origin": origin},
            on_epoch=on_epoch,
            deadline=started + TRAINING_WITHIN_S,
        )
        took_s = time.monotonic() - started
        if killer is not None:
            killer.join(30)
    finally:
        if web is not None:
            web.terminate()
        trainer.terminate()
        gateway.terminate()
    down_s, back_at = restart if len(restart) == 2 else (0.0, float("inf"))
    log = web.log() if web is not None else ""
    reopened = [at - back_at for at in seen.opened_at if at >= back_at]
    epochs = {job["metrics"]["epoch"] for _, job in seen.events if job["metrics"]}
    # What the page showed once Redis was back: progress while it lasted, then the end.
    after = [job for at, job in seen.events if at >= back_at]
    progress_after = [job for job in after if job["active"]]
    last = seen.last
    final_epoch = last["metrics"]["epoch"] if last and last["metrics"] else 0
    succeeded = last is not None and last["state"] == "succeeded"
    unclean = [code for code in seen.closes if code not in CLEAN_CLOSES]
    tracebacks = log.count("Traceback")
    held = (
        bool(restart)
        and succeeded
        and final_epoch == TRAIN["epochs"]
        and not seen.stuck
        and bool(reopened)
        and bool(progress_after)
        and not unclean
        and not tracebacks
    )
    record(
        f"Redis (channel layer) restarted ({DOWN_S:.1f} s down) mid training, page following",
        f"down {down_s:.1f} s from epoch {KILL_AT_EPOCH}; closes {seen.closes or 'none'}; "
        f"{len(seen.opened_at)} connections, reopened "
        + (
            f"{reopened[0]:.1f} s after Redis was back"
            if reopened
            else "NEVER after Redis was back"
        )
        + f"; {len(progress_after)} progress events after; "
        f"{len(epochs)} of {TRAIN['epochs']} epochs seen, final "
        f"{last['state'] if last else None} at epoch {final_epoch} after {took_s:.0f} s; "
        f"{tracebacks} tracebacks in the web log" + ("; STUCK" if seen.stuck else ""),
        held,
    )
    assert restart, "the training ended before Redis was restarted"
    assert not seen.stuck, (f"no event for {SILENT_S} s", seen.closes, log[-5000:])
    assert reopened, (seen.opened_at, back_at, log[-5000:])
    assert progress_after, ("the training ended before Redis was back", [j for _, j in seen.events])
    assert succeeded and final_epoch == TRAIN["epochs"], (last, log[-5000:])
    assert not unclean, (seen.closes, log[-5000:])
    assert not tracebacks, log[-8000:]
