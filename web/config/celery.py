"""The Celery app of the web tier: series jobs on Redis when WEB_SERIES_WORKER=celery.

The consumer runs as `celery -A web.config.celery worker --loglevel=INFO` (the prefork
pool, so the task time limit is enforced); `celery -A web.config.celery beat` adds the
periodic sweep that requeues jobs of a lost worker. Broker and result backend are
REDIS_URL; messages are JSON only; a task is acknowledged after it ran (a worker that
dies mid-job gets its message redelivered) and each worker process takes one at a time.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import worker_ready
from django.conf import settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "web.config.settings")

# How long one series job may run before its worker process is killed; the job is then
# failed or requeued by the recovery rule (its lease expires).
DEFAULT_TIME_LIMIT_S = 3600
SWEEP_EVERY_S = 5.0


def celery_config(
    *, redis_url: str, time_limit_s: int, sweep_every_s: float = SWEEP_EVERY_S
) -> dict[str, Any]:
    """Returns the Celery settings for a broker and result backend at redis_url."""
    return {
        "broker_url": redis_url or None,
        "result_backend": redis_url or None,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # A lost broker connection (Redis restarting) must not kill the job that runs: its
        # row, not its message, records the outcome, and a redelivered copy is skipped by
        # the claim. (Celery 6 means to default this to True.)
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": time_limit_s,
        "task_soft_time_limit": max(time_limit_s - 30, 1),
        "result_expires": 24 * 3600,
        "broker_connection_retry_on_startup": True,
        # Redis redelivers an unacknowledged message after this long: longer than any job.
        "broker_transport_options": {"visibility_timeout": time_limit_s + 600},
        # The web request that enqueues must not hang on a Redis outage: the sweep
        # picks up a job whose message never went out.
        "task_publish_retry_policy": {
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 1,
        },
        "beat_schedule": {
            "series-jobs-sweep": {"task": "series.jobs_sweep", "schedule": sweep_every_s}
        },
        "timezone": "UTC",
    }


app = Celery("web")
app.conf.update(
    celery_config(
        redis_url=settings.REDIS_URL,
        time_limit_s=int(
            getattr(settings, "WEB_SERIES_TASK_TIME_LIMIT_SECONDS", DEFAULT_TIME_LIMIT_S)
        ),
        # The sweep takes over jobs of a dead worker: as often as their lease is short.
        sweep_every_s=float(getattr(settings, "WEB_SERIES_SWEEP_SECONDS", SWEEP_EVERY_S)),
    )
)
app.autodiscover_tasks(["web.series"])


@worker_ready.connect
def _sweep_at_start(**_: Any) -> None:
    """Queues a sweep when a worker starts: jobs left by a restart are picked up at once."""
    app.send_task("series.jobs_sweep")
