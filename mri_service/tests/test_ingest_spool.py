"""Tests of upload spooling: a byte cap checked as chunks arrive, and no file left behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from mri_service.errors import SeriesRejected
from mri_service.ingest import IngestLimits, spooled_upload

LIMITS = IngestLimits(max_upload_bytes=1000)


async def _chunks(parts: Iterable[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def _leftovers(spool: Path) -> list[Path]:
    return list(spool.iterdir())


async def test_it_spools_the_chunks_to_one_file_and_removes_it_after(tmp_path: Path) -> None:
    received: list[int] = []
    parts = [b"abc", b"", b"defg", b"h" * 100]

    async with spooled_upload(
        _chunks(parts), spool_dir=tmp_path, limits=LIMITS, on_bytes=received.append
    ) as path:
        assert path.parent == tmp_path
        assert path.read_bytes() == b"".join(parts)

    assert received == [3, 7, 107]
    assert _leftovers(tmp_path) == []


async def test_it_accepts_the_declared_size_exactly(tmp_path: Path) -> None:
    async with spooled_upload(
        _chunks([b"x" * 600, b"y" * 400]), spool_dir=tmp_path, limits=LIMITS, declared_size=1000
    ) as path:
        assert path.stat().st_size == 1000

    assert _leftovers(tmp_path) == []


async def test_it_rejects_a_declared_size_over_the_cap_before_reading(tmp_path: Path) -> None:
    consumed: list[bytes] = []

    async def tracked() -> AsyncIterator[bytes]:
        consumed.append(b"x")
        yield b"x"

    with pytest.raises(SeriesRejected, match="larger than"):
        async with spooled_upload(tracked(), spool_dir=tmp_path, limits=LIMITS, declared_size=1001):
            pass

    assert consumed == []
    assert _leftovers(tmp_path) == []


async def test_it_rejects_an_upload_as_soon_as_it_passes_the_cap(tmp_path: Path) -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        while True:
            sent += 1
            yield b"z" * 300

    with pytest.raises(SeriesRejected) as caught:
        async with spooled_upload(endless(), spool_dir=tmp_path, limits=LIMITS):
            pass

    assert caught.value.reason == "SERIES_UPLOAD_TOO_LARGE"
    assert sent == 4  # the chunk that crossed 1000 bytes, and not one more
    assert _leftovers(tmp_path) == []


async def test_it_rejects_more_bytes_than_declared(tmp_path: Path) -> None:
    with pytest.raises(SeriesRejected, match="larger than the 10 bytes declared"):
        async with spooled_upload(
            _chunks([b"x" * 8, b"x" * 8]), spool_dir=tmp_path, limits=LIMITS, declared_size=10
        ):
            pass

    assert _leftovers(tmp_path) == []


async def test_it_rejects_an_upload_that_ends_before_its_declared_size(tmp_path: Path) -> None:
    with pytest.raises(SeriesRejected, match="ended after 8 of the 100 bytes"):
        async with spooled_upload(
            _chunks([b"x" * 8]), spool_dir=tmp_path, limits=LIMITS, declared_size=100
        ):
            pass

    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("parts", [[], [b"", b""]], ids=["no-chunks", "empty-chunks"])
async def test_it_rejects_an_empty_upload(tmp_path: Path, parts: list[bytes]) -> None:
    with pytest.raises(SeriesRejected) as caught:
        async with spooled_upload(_chunks(parts), spool_dir=tmp_path, limits=LIMITS):
            pass

    assert caught.value.reason == "SERIES_EMPTY"
    assert _leftovers(tmp_path) == []


async def test_it_removes_the_file_when_the_block_raises(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="model failed"):
        async with spooled_upload(_chunks([b"data"]), spool_dir=tmp_path, limits=LIMITS) as path:
            assert path.exists()
            raise RuntimeError("model failed")

    assert _leftovers(tmp_path) == []


async def test_it_removes_the_file_when_cancelled_mid_upload(tmp_path: Path) -> None:
    first_chunk_written = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield b"first"
        first_chunk_written.set()
        await asyncio.Event().wait()  # the client stops sending
        yield b"never"

    async def upload() -> None:
        async with spooled_upload(stalled(), spool_dir=tmp_path, limits=LIMITS):
            pass

    task = asyncio.create_task(upload())
    await first_chunk_written.wait()
    assert len(_leftovers(tmp_path)) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert _leftovers(tmp_path) == []


async def test_it_removes_the_file_when_cancelled_while_in_use(tmp_path: Path) -> None:
    in_use = asyncio.Event()

    async def upload() -> None:
        async with spooled_upload(_chunks([b"data"]), spool_dir=tmp_path, limits=LIMITS):
            in_use.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(upload())
    await in_use.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert _leftovers(tmp_path) == []
