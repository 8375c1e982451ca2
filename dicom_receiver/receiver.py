"""The receiver: the SCP, the scheduler of stable studies and the workers that analyse them."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import grpc
from medimg.v1 import series_analysis_service_pb2 as pb

from dicom_receiver.analysis import AnalysisFailed, analyze_study
from dicom_receiver.scp import StoreSCP
from dicom_receiver.sender import SendFailed, read_objects, send_objects
from dicom_receiver.settings import ReceiverSettings
from dicom_receiver.spool import Job, Spool
from servicekit.request_context import new_request_id, reset_request_id, set_request_id

LOG = logging.getLogger("dicom_receiver")
# The longest pause between two attempts, however many attempts are configured.
MAX_BACKOFF_S = 60.0
# How often the scheduler looks for stable studies, at most: a fraction of the stable age.
MAX_TICK_S = 1.0


class Outcome(Enum):
    """How a job ended; every outcome but INTERRUPTED deletes the study's spool."""

    REPORTED = "reported"  # analysed, and the results stored at the destination
    ANALYSED = "analysed"  # analysed, nothing sent (no destination, or nothing to send)
    REFUSED = "refused"  # the service refused the study: bad or partial, not retried
    GAVE_UP = "gave up"  # transient failures on every attempt
    INTERRUPTED = "interrupted"  # the receiver is stopping: kept, resumed at the next start


def backoff_s(attempt: int, base_s: float) -> float:
    """Returns the pause after failed attempt n (from 1): base, 2 x base, 4 x base, ... capped."""
    return float(min(MAX_BACKOFF_S, base_s * 2 ** (attempt - 1)))


@dataclass(frozen=True)
class Summary:
    """What a log line says of an analysis: counts and the model, never patient data."""

    slices: int
    flagged: int
    model: str

    @classmethod
    def of(cls, response: pb.AnalyzeSeriesResponse) -> Summary:
        """Returns the summary of an AnalyzeSeries answer."""
        demo = " (demo model, not for clinical use)" if response.demo_model else ""
        return cls(
            response.slice_count,
            len(response.positive_slice_indices),
            f"{response.model_name} {response.model_version}{demo}",
        )


class Receiver:
    """Receives studies, analyses each once it is stable and sends the results on."""

    def __init__(self, settings: ReceiverSettings) -> None:
        self.settings = settings
        self.spool = Spool(settings.spool_dir)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._jobs: queue.Queue[Job] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self.scp = StoreSCP(settings, self.spool, on_released=self._wake.set)
        self._channel = grpc.insecure_channel(
            settings.gateway_address,
            options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)],
        )

    @property
    def port(self) -> int:
        """Returns the DICOM port the SCP listens on."""
        return self.scp.port

    def start(self) -> None:
        """Recovers the spool, starts the SCP, the scheduler and the workers."""
        jobs, discarded = self.spool.recover()
        if discarded:
            LOG.warning(
                "discarded %d association(s) that were still open when the receiver stopped",
                discarded,
            )
        for job in jobs:
            LOG.info("study %s: resuming its analysis, interrupted by a stop", job.key)
            self._jobs.put(job)
        waiting = self.spool.studies()
        if waiting:
            LOG.info("%d study(ies) kept from before the start wait to be stable", len(waiting))
        self.scp.start()
        self._spawn("scheduler", self._schedule)
        for number in range(self.settings.max_concurrent_studies):
            self._spawn(f"worker-{number + 1}", self._work)

    def stop(self, grace_s: float | None = None) -> None:
        """Stops receiving, lets running jobs end within grace_s, and closes the channel.

        A job still running after the grace keeps its spool and is analysed again at the
        next start; an open association is aborted and its instances discarded.
        """
        grace = self.settings.grace_s if grace_s is None else grace_s
        self.scp.stop()
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=grace)
        self._channel.close()

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        # Daemon threads: a job that outlives the grace must not keep the process alive;
        # its spool stays and the next start resumes it.
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _schedule(self) -> None:
        stable = self.settings.stable_age_s
        tick = min(MAX_TICK_S, stable / 4)
        while not self._stop.is_set():
            for key in self.spool.due(stable):
                job = self.spool.claim(key, stable)
                if job is not None:
                    self._jobs.put(job)
            self._wake.wait(tick)
            self._wake.clear()

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                job = self._jobs.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self.process(job)
            except Exception:  # a bug must not kill the worker: log it, drop the study
                LOG.exception("study %s: unexpected failure; its spool is deleted", job.key)
                self.spool.finish(job)

    def process(self, job: Job) -> Outcome:
        """Analyses one claimed study, sends its results and deletes its spool."""
        files = job.files()
        LOG.info(
            "study %s (StudyInstanceUID %s): stable with %d instance(s), analysing",
            job.key,
            job.study_instance_uid,
            len(files),
        )
        response = self._analyse(job)
        if isinstance(response, Outcome):
            if response is not Outcome.INTERRUPTED:
                self.spool.finish(job)
            return response
        summary = Summary.of(response)
        LOG.info(
            "study %s analysed: %d slice(s), %d flagged, model %s",
            job.key,
            summary.slices,
            summary.flagged,
            summary.model,
        )
        outcome = self._send(job, response)
        if outcome is not Outcome.INTERRUPTED:
            self.spool.finish(job)
            LOG.info("study %s: done (%s); its spool is deleted", job.key, outcome.value)
        return outcome

    def _analyse(self, job: Job) -> pb.AnalyzeSeriesResponse | Outcome:
        attempts = self.settings.retry_attempts
        for attempt in range(1, attempts + 1):
            request_id = new_request_id()
            token = set_request_id(request_id)
            try:
                return analyze_study(
                    self._channel,
                    job.files(),
                    timeout_s=self.settings.analysis_timeout_s,
                    request_id=request_id,
                )
            except AnalysisFailed as failure:
                if self._stop.is_set():
                    # Most likely cancelled by the stop closing the channel: not the study's
                    # fault. Its spool stays and the next start analyses it again.
                    LOG.info("study %s: interrupted by the stop (%s)", job.key, failure.code.name)
                    return Outcome.INTERRUPTED
                if not failure.transient:
                    LOG.warning(
                        "study %s refused by the service: %s; deleted, not retried",
                        job.key,
                        failure,
                    )
                    return Outcome.REFUSED
                if attempt == attempts:
                    LOG.error(
                        "study %s: %s on all %d attempts; deleted: send the study again",
                        job.key,
                        failure,
                        attempts,
                    )
                    return Outcome.GAVE_UP
                delay = self._announce_retry(job, failure, attempt)
            finally:
                reset_request_id(token)
            if self._stop.wait(delay):
                return Outcome.INTERRUPTED
        return Outcome.GAVE_UP  # not reached: the loop returns on its last attempt

    def _announce_retry(self, job: Job, failure: Exception, attempt: int) -> float:
        """Logs a transient failure and returns how long to wait before the next attempt."""
        delay = backoff_s(attempt, self.settings.retry_backoff_s)
        LOG.warning(
            "study %s: %s (attempt %d of %d); trying again in %.1f s",
            job.key,
            failure,
            attempt,
            self.settings.retry_attempts,
            delay,
        )
        return delay

    def _send(self, job: Job, response: pb.AnalyzeSeriesResponse) -> Outcome:
        destination = self.settings.destination
        reports = response.dicom_reports
        blobs = [reports.measurement_report, reports.key_images]
        if destination is None:
            LOG.info(
                "study %s: DICOM_DESTINATION is not set: nothing sent, %d result object(s) dropped",
                job.key,
                sum(1 for blob in blobs if blob),
            )
            return Outcome.ANALYSED
        try:
            datasets = read_objects(blobs)
        except Exception:  # the service's bytes, but the receiver must not crash on them
            LOG.error("study %s: the service's DICOM reports do not parse: nothing sent", job.key)
            return Outcome.ANALYSED
        if not datasets:
            LOG.warning("study %s: the service returned no DICOM reports: nothing sent", job.key)
            return Outcome.ANALYSED
        attempts = self.settings.retry_attempts
        for attempt in range(1, attempts + 1):
            try:
                sent = send_objects(datasets, destination, ae_title=self.settings.ae_title)
            except SendFailed as failure:
                if self._stop.is_set():
                    LOG.info("study %s: sending interrupted by the stop", job.key)
                    return Outcome.INTERRUPTED
                if attempt == attempts:
                    LOG.error(
                        "study %s: %s on all %d attempts; results dropped",
                        job.key,
                        failure,
                        attempts,
                    )
                    return Outcome.GAVE_UP
                if self._stop.wait(self._announce_retry(job, failure, attempt)):
                    return Outcome.INTERRUPTED
                continue
            LOG.info("study %s: stored %s at %s", job.key, ", ".join(sent), destination)
            return Outcome.REPORTED
        return Outcome.GAVE_UP  # not reached
