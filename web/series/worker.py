"""The in-process job worker: a thread that claims queued series jobs from the database.

The rows are the queue, so a restart loses nothing: at start and every
WEB_SERIES_SWEEP_SECONDS the worker requeues jobs whose lease expired (their worker
stopped renewing it), or fails those interrupted too often. Several processes may each
run a worker; a claim is one atomic UPDATE under a new lease token, so no job runs twice
at once and a worker that lost its job writes nothing more of it. Jobs waiting for an
automatic retry are claimed once their time comes (the idle wait polls for them).

WEB_SERIES_WORKER picks who runs the jobs: "thread" (the default) runs this worker in
the process that serves the site; "celery" starts no thread and sends each job to Celery
on REDIS_URL (web/series/tasks.py, consumed by `celery -A web.config.celery worker`);
"off" runs none here (another process does).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
import uuid

from django.conf import settings
from django.db import DatabaseError, close_old_connections

from web.series import services

logger = logging.getLogger(__name__)

MODE_ENV = "WEB_SERIES_WORKER"  # "thread" (the default), "celery" or "off"
MODES = ("thread", "celery", "off")
IDLE_WAIT_S = 2.0


def worker_name() -> str:
    """Returns a name unique to this process: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def mode() -> str:
    """Returns WEB_SERIES_WORKER: "thread", "celery" or "off"; refuses anything else."""
    chosen = os.environ.get(MODE_ENV, "thread").strip().lower() or "thread"
    if chosen not in MODES:
        raise ValueError(f"{MODE_ENV} must be one of {', '.join(MODES)}, got {chosen!r}")
    return chosen


def serving_process() -> bool:
    """Tells whether this process serves the site and runs the worker thread (mode "thread")."""
    if mode() != "thread" or os.environ.get("WEB_DEFER_SERIES_WORKER"):
        return False
    program = os.path.basename(sys.argv[0]) if sys.argv else ""
    serving = program in ("daphne", "uvicorn") or "runserver" in sys.argv[1:2]
    return serving or sys.argv[0].replace(os.sep, "/").endswith("web/__main__.py")


class SeriesWorker(threading.Thread):
    """Claims and runs queued jobs one at a time until stopped."""

    def __init__(self, *, idle_wait_s: float = IDLE_WAIT_S) -> None:
        super().__init__(name="series-worker", daemon=True)
        self.worker = worker_name()
        self.idle_wait_s = idle_wait_s
        self._wake = threading.Event()
        self._halt = threading.Event()

    def notify(self) -> None:
        """Wakes the worker: a job was queued."""
        self._wake.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Asks the worker to stop after its current job and waits for it."""
        self._halt.set()
        self._wake.set()
        if self.is_alive():
            self.join(timeout_s)

    def run(self) -> None:
        """Recovers orphaned jobs, then claims and runs jobs until stopped."""
        logger.info("series worker %s started", self.worker)
        recovered_at = 0.0
        while not self._halt.is_set():
            try:
                close_old_connections()
                now = time.monotonic()
                if now - recovered_at >= settings.WEB_SERIES_SWEEP_SECONDS:
                    services.series_jobs_recover()
                    recovered_at = now
                if self.run_one():
                    continue
            except DatabaseError as error:
                # The tables may not exist yet (`python -m web` migrates after the apps
                # load), or the database is restarting: try again after the idle wait.
                logger.warning("series worker: database not ready (%s); retrying", error)
            except Exception:
                logger.exception("series worker: could not claim or run a job")
            finally:
                close_old_connections()
            self._wake.wait(self.idle_wait_s)
            self._wake.clear()
        logger.info("series worker %s stopped", self.worker)

    def run_one(self) -> bool:
        """Claims one job and runs it; tells whether there was one."""
        job = services.series_job_claim(worker=self.worker)
        if job is None:
            return False
        services.series_job_run(job=job)
        return True


_lock = threading.Lock()
_worker: SeriesWorker | None = None


def start_worker() -> SeriesWorker:
    """Starts this process's worker once; later calls return the running one."""
    global _worker
    with _lock:
        if _worker is None or not _worker.is_alive():
            _worker = SeriesWorker()
            _worker.start()
        return _worker


def stop_worker() -> None:
    """Stops this process's worker, if one runs."""
    global _worker
    with _lock:
        running, _worker = _worker, None
    if running is not None:
        running.stop()


def notify(*, job_id: uuid.UUID | None = None, delay_s: float = 0.0) -> None:
    """Wakes this process's worker, or with Celery sends the job (by id, else the oldest).

    `delay_s`: the job may start only then (an automatic retry); the thread worker's idle
    wait finds it when it is due, Celery gets the message with that countdown. Without a
    running worker (mode "off") the job waits in its row for one that does.
    """
    if mode() == "celery":
        from web.series import tasks

        tasks.enqueue(job_id=job_id, delay_s=delay_s)
        return
    if delay_s > 0:
        return
    running = _worker
    if running is not None:
        running.notify()
