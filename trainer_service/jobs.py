"""Training jobs: the queue (one per project, a cap overall), persistence and event fan-out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from servicekit.errors import MedimgError
from trainer_service import names
from trainer_service.errors import TrainingCancelled, TrainingJobNotFound
from trainer_service.names import TrainParams
from trainer_service.store import Store
from trainer_service.train import EpochMetrics

logger = logging.getLogger(__name__)

INTERRUPTED = "interrupted by a restart; train again"
CANCEL_WAIT_S = 30.0


class JobState(StrEnum):
    """Lifecycle of a job, as TrainingJobState names it."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def ended(self) -> bool:
        """Returns True for the terminal states."""
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True)
class JobSnapshot:
    """A job at one moment: what an event, GetTrainingJob and the JSON record carry."""

    project_id: str
    job_id: str
    state: JobState
    params: TrainParams
    create_time: float
    metrics: EpochMetrics | None = None
    error_message: str = ""
    end_time: float | None = None

    @property
    def name(self) -> str:
        """Returns "projects/{project_id}/trainingJobs/{job_id}"."""
        return names.job_name(self.project_id, self.job_id)

    def to_json(self) -> dict[str, Any]:
        """Returns the JSON record of the job."""
        document = asdict(self)
        document["state"] = self.state.value
        return document

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> JobSnapshot:
        """Returns the job read back from its JSON record."""
        metrics = raw.get("metrics")
        return cls(
            project_id=raw["project_id"],
            job_id=raw["job_id"],
            state=JobState(raw["state"]),
            params=TrainParams(**raw["params"]),
            create_time=float(raw["create_time"]),
            metrics=EpochMetrics(**metrics) if metrics else None,
            error_message=raw.get("error_message", ""),
            end_time=raw.get("end_time"),
        )


# Trains the job's project and saves the model; returns the final epoch's metrics.
Runner = Callable[[JobSnapshot, Callable[[EpochMetrics], None], Callable[[], bool]], EpochMetrics]


class _Watcher:
    """One async follower of a job; the trainer thread hands it events without waiting."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[JobSnapshot] = asyncio.Queue()

    def push(self, snapshot: JobSnapshot) -> None:
        # A closed event loop raises RuntimeError: nobody is listening any more.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.queue.put_nowait, snapshot)


@dataclass
class _Job:
    snapshot: JobSnapshot
    cancel: threading.Event = field(default_factory=threading.Event)
    watchers: list[_Watcher] = field(default_factory=list)


class JobManager:
    """Runs jobs on worker threads; every public method is safe to call from the event loop."""

    def __init__(self, store: Store, runner: Runner, *, max_concurrent: int) -> None:
        self._store = store
        self._runner = runner
        self._max_concurrent = max_concurrent
        self._lock = threading.RLock()
        self._jobs: dict[tuple[str, str], _Job] = {}
        self._pending: list[_Job] = []  # QUEUED, oldest first
        self._running: dict[str, _Job] = {}  # by project id
        self._executor = ThreadPoolExecutor(max_concurrent, thread_name_prefix="trainer-job")
        self._stopping = False

    def recover(self) -> None:
        """Loads the jobs on disk; one that was queued or running when the process died failed."""
        with self._lock:
            for raw in self._store.load_jobs():
                try:
                    snapshot = JobSnapshot.from_json(raw)
                except (KeyError, TypeError, ValueError):
                    logger.warning("skipping a malformed job record")
                    continue
                job = _Job(snapshot)
                self._jobs[(snapshot.project_id, snapshot.job_id)] = job
                if not snapshot.state.ended:
                    self._update(job, state=JobState.FAILED, error_message=INTERRUPTED)

    def stop(self) -> None:
        """Stops running jobs (they fail as interrupted) and the worker threads."""
        with self._lock:
            self._stopping = True
            for job in list(self._pending):
                self._update(job, state=JobState.FAILED, error_message=INTERRUPTED)
            self._pending.clear()
            for job in self._running.values():
                job.cancel.set()
        self._executor.shutdown(wait=True, cancel_futures=True)

    def submit(
        self, project_id: str, params: TrainParams
    ) -> tuple[JobSnapshot, AsyncIterator[JobSnapshot]]:
        """Creates a job and returns it as created with its events (the first is that state)."""
        with self._lock:
            job_id = names.new_id()
            job = _Job(JobSnapshot(project_id, job_id, JobState.QUEUED, params, time.time()))
            self._jobs[(project_id, job_id)] = job
            self._pending.append(job)
            self._store.save_job(project_id, job_id, job.snapshot.to_json())
            self._schedule()
            return job.snapshot, self._follow(job)

    def get(self, project_id: str, job_id: str) -> JobSnapshot:
        """Returns the job's current state; TrainingJobNotFound when there is none."""
        with self._lock:
            return self._find(project_id, job_id).snapshot

    def jobs_of(self, project_id: str) -> list[JobSnapshot]:
        """Returns the project's jobs, oldest first."""
        with self._lock:
            found = [
                job.snapshot for job in self._jobs.values() if job.snapshot.project_id == project_id
            ]
        return sorted(found, key=lambda snapshot: snapshot.create_time)

    def watch(self, project_id: str, job_id: str) -> AsyncIterator[JobSnapshot]:
        """Returns the job's events from now: its current state first, until it ends."""
        with self._lock:
            return self._follow(self._find(project_id, job_id))

    async def cancel(self, project_id: str, job_id: str) -> JobSnapshot:
        """Cancels a queued or running job and returns it once it has ended."""
        with self._lock:
            job = self._find(project_id, job_id)
            if job.snapshot.state is JobState.QUEUED:
                self._pending.remove(job)
                self._update(job, state=JobState.CANCELLED)
                return job.snapshot
            if job.snapshot.state.ended:
                return job.snapshot
            job.cancel.set()
            events = self._follow(job)
        snapshot = job.snapshot
        async with asyncio.timeout(CANCEL_WAIT_S):
            async for event in events:
                snapshot = event
        return snapshot

    def forget_project(self, project_id: str) -> None:
        """Cancels and forgets every job of a project that is being deleted."""
        with self._lock:
            for key, job in list(self._jobs.items()):
                if key[0] != project_id:
                    continue
                if job in self._pending:
                    self._pending.remove(job)
                    self._update(job, state=JobState.CANCELLED)
                job.cancel.set()
                del self._jobs[key]

    def _find(self, project_id: str, job_id: str) -> _Job:
        job = self._jobs.get((project_id, job_id))
        if job is None:
            raise TrainingJobNotFound(
                f"there is no training job {names.job_name(project_id, job_id)}"
            )
        return job

    def _follow(self, job: _Job) -> AsyncIterator[JobSnapshot]:
        # Called with the lock held: the first event and the subscription are one step, so
        # no event is missed or seen twice.
        first = job.snapshot
        watcher = _Watcher(asyncio.get_running_loop())
        if not first.state.ended:
            job.watchers.append(watcher)
        return self._events(job, watcher, first)

    async def _events(
        self, job: _Job, watcher: _Watcher, first: JobSnapshot
    ) -> AsyncIterator[JobSnapshot]:
        try:
            snapshot = first
            yield snapshot
            while not snapshot.state.ended:
                snapshot = await watcher.queue.get()
                yield snapshot
        finally:
            with self._lock:
                if watcher in job.watchers:
                    job.watchers.remove(watcher)

    def _update(self, job: _Job, **changes: Any) -> None:
        # Called with the lock held.
        snapshot = replace(job.snapshot, **changes)
        if snapshot.state.ended and snapshot.end_time is None:
            snapshot = replace(snapshot, end_time=time.time())
        job.snapshot = snapshot
        self._store.save_job(snapshot.project_id, snapshot.job_id, snapshot.to_json())
        for watcher in job.watchers:
            watcher.push(snapshot)
        if snapshot.state.ended:
            job.watchers.clear()

    def _schedule(self) -> None:
        # Called with the lock held: starts the oldest queued jobs that may run now.
        for job in list(self._pending):
            if len(self._running) >= self._max_concurrent or self._stopping:
                return
            project_id = job.snapshot.project_id
            if project_id in self._running:
                continue
            self._pending.remove(job)
            self._running[project_id] = job
            self._update(job, state=JobState.RUNNING)
            self._executor.submit(self._run, job)

    def _run(self, job: _Job) -> None:
        def on_epoch(metrics: EpochMetrics) -> None:
            with self._lock:
                self._update(job, metrics=metrics)

        outcome: dict[str, Any]
        try:
            metrics = self._runner(job.snapshot, on_epoch, job.cancel.is_set)
            outcome = {"state": JobState.SUCCEEDED, "metrics": metrics}
        except TrainingCancelled:
            outcome = {"state": JobState.CANCELLED}
        except MedimgError as exc:
            outcome = {"state": JobState.FAILED, "error_message": exc.message}
        except FloatingPointError as exc:
            outcome = {"state": JobState.FAILED, "error_message": str(exc)}
        except Exception:
            logger.exception("training job %s failed", job.snapshot.name)
            outcome = {"state": JobState.FAILED, "error_message": "training failed: internal error"}
        with self._lock:
            if self._stopping and outcome["state"] is JobState.CANCELLED:
                outcome = {"state": JobState.FAILED, "error_message": INTERRUPTED}
            self._running.pop(job.snapshot.project_id, None)
            self._update(job, **outcome)
            self._schedule()
