"""Spools an upload's chunks to a temporary file under a byte cap, and always removes it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Callable
from pathlib import Path

from mri_service.errors import SeriesRejected
from mri_service.ingest.limits import MIB, IngestLimits


def _too_large(limits: IngestLimits) -> SeriesRejected:
    return SeriesRejected(
        f"the upload is larger than {limits.max_upload_bytes / MIB:.1f} MB; send a smaller series",
        reason="SERIES_UPLOAD_TOO_LARGE",
    )


@contextlib.asynccontextmanager
async def spooled_upload(
    chunks: AsyncIterable[bytes],
    *,
    spool_dir: Path,
    limits: IngestLimits,
    declared_size: int | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> AsyncIterator[Path]:
    """Yields the path of a temporary file holding every chunk, removed on exit.

    The upload never sits in memory whole: each chunk is written as it arrives. Writes
    go straight to the file from the event loop, as page-cache writes of one chunk are
    shorter than a hop to a thread. The file is removed however the block ends:
    success, error or cancellation.

    Args:
        chunks: the upload's bytes, in order.
        spool_dir: where the temporary file is made; it must exist.
        limits: `max_upload_bytes` caps the declared and the received size.
        declared_size: the size the client announced; None (or 0, proto3's unset
            value) when unknown. Receiving more or fewer bytes is refused.
        on_bytes: called with the total bytes received so far after each chunk.

    Raises:
        SeriesRejected: the upload is empty, over the cap or not the declared size.
    """
    if declared_size is not None and declared_size < 0:
        raise SeriesRejected("the declared upload size is negative", reason="SERIES_UPLOAD_SIZE")
    if declared_size and declared_size > limits.max_upload_bytes:
        raise _too_large(limits)
    descriptor, name = tempfile.mkstemp(prefix="series-", suffix=".zip", dir=spool_dir)
    path = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as spool:
            received = 0
            async for chunk in chunks:
                if not chunk:
                    continue
                received += len(chunk)
                if received > limits.max_upload_bytes:
                    raise _too_large(limits)
                if declared_size and received > declared_size:
                    raise SeriesRejected(
                        f"the upload is larger than the {declared_size} bytes declared",
                        reason="SERIES_UPLOAD_SIZE",
                    )
                spool.write(chunk)
                if on_bytes is not None:
                    on_bytes(received)
        if received == 0:
            raise SeriesRejected("the upload is empty; send the series zip", reason="SERIES_EMPTY")
        if declared_size and received < declared_size:
            raise SeriesRejected(
                f"the upload ended after {received} of the {declared_size} bytes declared; "
                "send it again",
                reason="SERIES_UPLOAD_SIZE",
            )
        yield path
    finally:
        path.unlink(missing_ok=True)
