"""The spool on disk: per-association folders, commit on release, discard, claims and restarts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dicom_receiver.spool import (
    ASSOCIATION_PREFIX,
    INCOMING,
    INSTANCES,
    JOBS,
    RELEASED_MARKER,
    Spool,
    StudyTooLarge,
    one_way_key,
)

STUDY, OTHER = "1.2.3.1", "1.2.3.2"
LIMIT = 1 << 30


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def spool(tmp_path: Path, clock: Clock) -> Spool:
    return Spool(tmp_path / "spool", clock=clock)


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


def test_instances_become_part_of_the_study_only_when_the_association_is_released(
    spool: Spool, clock: Clock
) -> None:
    key = spool.store("a1", STUDY, "1.2.3.1.1", b"one", max_study_bytes=LIMIT)
    spool.store("a1", STUDY, "1.2.3.1.2", b"two", max_study_bytes=LIMIT)
    study = spool.root / INCOMING / key
    assert key == one_way_key(STUDY)
    assert _files(study / INSTANCES) == []
    assert len(_files(study / f"{ASSOCIATION_PREFIX}a1")) == 2
    clock.now += 100
    assert spool.due(1.0) == []  # the association is still open
    assert spool.release("a1") == [(key, 2)]
    assert len(_files(study / INSTANCES)) == 2
    assert not (study / f"{ASSOCIATION_PREFIX}a1").exists()
    assert spool.due(1.0) == []  # just released: not stable yet
    clock.now += 1.0
    assert spool.due(1.0) == [key]
    assert (spool.root.stat().st_mode & 0o777) == 0o700


def test_an_association_that_ends_without_release_leaves_nothing(spool: Spool) -> None:
    spool.store("kept", STUDY, "1.2.3.1.1", b"one", max_study_bytes=LIMIT)
    spool.release("kept")
    spool.store("lost", STUDY, "1.2.3.1.2", b"two", max_study_bytes=LIMIT)
    spool.store("lost", OTHER, "1.2.3.2.1", b"three", max_study_bytes=LIMIT)
    assert sorted(spool.discard("lost")) == sorted(
        [(one_way_key(STUDY), 1), (one_way_key(OTHER), 1)]
    )
    assert [s.committed_files for s in spool.studies()] == [1]
    # The other study had nothing released: its folder is gone.
    assert not (spool.root / INCOMING / one_way_key(OTHER)).exists()


def test_a_resent_instance_replaces_the_earlier_copy(spool: Spool) -> None:
    for association in ("first", "second"):
        spool.store(association, STUDY, "1.2.3.1.1", association.encode(), max_study_bytes=LIMIT)
        spool.release(association)
    (state,) = spool.studies()
    assert (state.committed_files, state.committed_bytes) == (1, len(b"second"))


def test_a_study_past_its_byte_limit_is_refused_and_nothing_is_written(spool: Spool) -> None:
    spool.store("a", STUDY, "1.2.3.1.1", b"x" * 60, max_study_bytes=100)
    with pytest.raises(StudyTooLarge):
        spool.store("b", STUDY, "1.2.3.1.2", b"x" * 41, max_study_bytes=100)
    assert len(_files(spool.root / INCOMING / one_way_key(STUDY))) == 2  # study.json + 1


def test_a_claimed_study_moves_to_a_job_and_later_instances_start_a_new_study(
    spool: Spool, clock: Clock
) -> None:
    spool.store("a", STUDY, "1.2.3.1.1", b"one", max_study_bytes=LIMIT)
    spool.release("a")
    clock.now += 5
    job = spool.claim(one_way_key(STUDY), 1.0)
    assert job is not None and job.study_instance_uid == STUDY
    assert job.folder.parent == spool.root / JOBS
    assert [p.name for p in job.files()] == [one_way_key("1.2.3.1.1", 32) + ".dcm"]
    assert spool.claim(one_way_key(STUDY), 1.0) is None
    spool.store("b", STUDY, "1.2.3.1.2", b"two", max_study_bytes=LIMIT)
    assert [s.committed_files for s in spool.studies()] == [0]
    spool.finish(job)
    assert not job.folder.exists()


def test_a_restart_discards_open_associations_finishes_released_ones_and_resumes_jobs(
    tmp_path: Path, clock: Clock
) -> None:
    before = Spool(tmp_path / "spool", clock=clock)
    before.store("done", STUDY, "1.2.3.1.1", b"one", max_study_bytes=LIMIT)
    before.release("done")
    before.store("open", STUDY, "1.2.3.1.2", b"two", max_study_bytes=LIMIT)
    # Killed between the RELEASED marker and the renames: the association ended well.
    before.store("half", OTHER, "1.2.3.2.1", b"three", max_study_bytes=LIMIT)
    (tmp_path / "spool" / INCOMING / one_way_key(OTHER) / "assoc-half" / RELEASED_MARKER).touch()
    before.store("job", "1.2.3.3", "1.2.3.3.1", b"four", max_study_bytes=LIMIT)
    before.release("job")
    clock.now += 10
    claimed = before.claim(one_way_key("1.2.3.3"), 1.0)
    assert claimed is not None
    # A leftover half-written file of the open association.
    part = tmp_path / "spool" / INCOMING / one_way_key(STUDY) / "assoc-open" / "x.dcm.part"
    part.write_bytes(b"half")

    after = Spool(tmp_path / "spool", clock=clock)
    jobs, discarded = after.recover()
    assert discarded == 1
    assert [job.study_instance_uid for job in jobs] == ["1.2.3.3"]
    states = {s.study_instance_uid: s for s in after.studies()}
    assert states[STUDY].committed_files == 1
    assert states[OTHER].committed_files == 1
    assert not part.parent.exists()
    # Files written long ago: stable already, no second wait after a restart.
    for path in [
        *(tmp_path / "spool" / INCOMING).rglob("*.dcm"),
        *(tmp_path / "spool" / INCOMING).glob(f"*/{INSTANCES}"),
    ]:
        os.utime(path, (path.stat().st_atime - 3600, path.stat().st_mtime - 3600))
    again = Spool(tmp_path / "spool", clock=clock)
    again.recover()
    assert sorted(again.due(60.0)) == sorted([one_way_key(STUDY), one_way_key(OTHER)])


def test_after_a_restart_a_study_released_just_before_waits_its_stable_age(
    tmp_path: Path, clock: Clock
) -> None:
    before = Spool(tmp_path / "spool", clock=clock)
    before.store("a", STUDY, "1.2.3.1.1", b"one", max_study_bytes=LIMIT)
    path = next((tmp_path / "spool").rglob("*.dcm"))
    # Written an hour ago, in an association released just now.
    os.utime(path, (path.stat().st_atime - 3600, path.stat().st_mtime - 3600))
    before.release("a")
    after = Spool(tmp_path / "spool", clock=clock)
    after.recover()
    assert after.due(60.0) == []
    clock.now += 61
    assert after.due(60.0) == [one_way_key(STUDY)]
