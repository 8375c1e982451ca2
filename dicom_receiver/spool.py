"""The on-disk spool of studies being received: atomic writes, commit on release, claims.

Layout under the spool folder (created 0700: it holds patient data while a job runs):

    incoming/<study key>/study.json            {"study_instance_uid": ...}, nothing else
    incoming/<study key>/instances/<sop key>.dcm   instances of released associations
    incoming/<study key>/assoc-<id>/<sop key>.dcm  instances of an association still open
    incoming/<study key>/assoc-<id>/RELEASED       written when that association is released
    jobs/<study key>-<job id>/...              a stable study claimed for analysis

Keys are one-way: a hash of the UID, so no folder name carries a UID or patient data and a
hostile UID cannot name a path. An instance is written to `<sop key>.part`, flushed and
renamed, so a file is either whole or absent. An association's instances join the study
only when it is released: its folder gets a RELEASED marker, then each file is renamed
into `instances/`; a crash halfway is finished at the next start (the marker says the
association ended well), while an association folder without the marker is discarded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

INCOMING = "incoming"
JOBS = "jobs"
INSTANCES = "instances"
ASSOCIATION_PREFIX = "assoc-"
RELEASED_MARKER = "RELEASED"
STUDY_FILE = "study.json"
PART_SUFFIX = ".part"
INSTANCE_SUFFIX = ".dcm"
# A short key still makes a collision between two studies of one spool vanishingly rare.
STUDY_KEY_LENGTH = 16
SOP_KEY_LENGTH = 32


def one_way_key(uid: str, length: int = STUDY_KEY_LENGTH) -> str:
    """Returns a short hex key of a UID: names a study in folders and log lines."""
    return hashlib.sha256(uid.encode("ascii", "replace")).hexdigest()[:length]


class StudyTooLarge(Exception):
    """Storing an instance would take its study past the per-study byte limit."""


@dataclass
class StudyState:
    """What the receiver knows of one study in `incoming/`, kept in memory.

    `last_activity` is a time.monotonic() reading: the last instance received or the last
    association released, whichever came later.
    """

    key: str
    study_instance_uid: str
    committed_files: int = 0
    committed_bytes: int = 0
    pending_bytes: dict[str, int] = field(default_factory=dict)  # association id -> bytes
    last_activity: float = 0.0

    @property
    def total_bytes(self) -> int:
        """Returns the bytes of the study, released or still arriving."""
        return self.committed_bytes + sum(self.pending_bytes.values())

    @property
    def receiving(self) -> bool:
        """Tells whether an association is still sending instances of the study."""
        return bool(self.pending_bytes)


@dataclass(frozen=True)
class Job:
    """A stable study claimed for analysis: its files are in `folder/instances`."""

    key: str
    study_instance_uid: str
    folder: Path

    def files(self) -> list[Path]:
        """Returns the study's instance files, sorted by name."""
        return sorted((self.folder / INSTANCES).glob(f"*{INSTANCE_SUFFIX}"))


def due_studies(states: Iterable[StudyState], now: float, stable_age_s: float) -> list[str]:
    """Returns the keys of studies to analyse: none still arriving, quiet for stable_age_s.

    Pure: `now` and every state's `last_activity` are time.monotonic() readings. The
    oldest study comes first, so one busy sender cannot starve the others.
    """
    ready = [
        state
        for state in states
        if not state.receiving
        and state.committed_files > 0
        and now - state.last_activity >= stable_age_s
    ]
    return [state.key for state in sorted(ready, key=lambda s: s.last_activity)]


class Spool:
    """The spool folder and the in-memory state of its studies; every method is thread-safe.

    Association handlers (one thread per association) and the scheduler share it, so one
    lock guards both the state and the renames that change which study a file is part of.
    """

    def __init__(self, root: Path, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.root = root
        self._clock = clock
        self._lock = threading.Lock()
        self._studies: dict[str, StudyState] = {}
        for folder in (root, root / INCOMING, root / JOBS):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Patient data sits here while a job runs: nobody else on the machine reads it.
        root.chmod(0o700)

    # --- start-up ------------------------------------------------------------------

    def recover(self) -> tuple[list[Job], int]:
        """Rebuilds the state from disk after a start; returns the jobs to resume.

        A released association's folder is committed (its marker says so), any other
        association folder is an association that was open when the receiver stopped:
        discarded. Claimed jobs come back first, to be analysed again from the start.
        Returns the jobs and how many unreleased association folders were discarded.
        """
        discarded = 0
        jobs: list[Job] = []
        with self._lock:
            for folder in sorted((self.root / JOBS).iterdir()):
                uid = _read_study_uid(folder)
                if uid is None or not any((folder / INSTANCES).glob(f"*{INSTANCE_SUFFIX}")):
                    shutil.rmtree(folder, ignore_errors=True)
                    continue
                jobs.append(Job(folder.name.split("-", 1)[0], uid, folder))
            for folder in sorted((self.root / INCOMING).iterdir()):
                discarded += self._recover_study(folder)
        return jobs, discarded

    def _recover_study(self, folder: Path) -> int:
        discarded = 0
        for association in folder.glob(f"{ASSOCIATION_PREFIX}*"):
            if (association / RELEASED_MARKER).exists():
                _move_instances(association, folder / INSTANCES)
            else:
                shutil.rmtree(association, ignore_errors=True)
                discarded += 1
        uid = _read_study_uid(folder)
        files = sorted((folder / INSTANCES).glob(f"*{INSTANCE_SUFFIX}"))
        if uid is None or not files:
            shutil.rmtree(folder, ignore_errors=True)
            return discarded
        # A rename into instances/ (a release) dates the folder; a write dates the file.
        newest = max([(folder / INSTANCES).stat().st_mtime, *(p.stat().st_mtime for p in files)])
        age = max(0.0, time.time() - newest)
        self._studies[folder.name] = StudyState(
            key=folder.name,
            study_instance_uid=uid,
            committed_files=len(files),
            committed_bytes=sum(path.stat().st_size for path in files),
            # Counted from the last write or release: a study that was stable before the
            # restart does not wait another stable age.
            last_activity=self._clock() - age,
        )
        return discarded

    # --- receiving -----------------------------------------------------------------

    def store(
        self,
        association_id: str,
        study_instance_uid: str,
        sop_instance_uid: str,
        data: bytes,
        *,
        max_study_bytes: int,
    ) -> str:
        """Writes one instance into its association's folder of the study; returns the study key.

        Raises StudyTooLarge (and writes nothing) when the study would pass max_study_bytes.
        """
        key = one_way_key(study_instance_uid)
        with self._lock:
            state = self._studies.get(key)
            if state is None:
                state = StudyState(key, study_instance_uid)
                folder = self.root / INCOMING / key
                (folder / INSTANCES).mkdir(mode=0o700, parents=True, exist_ok=True)
                _write_atomically(
                    folder / STUDY_FILE,
                    json.dumps({"study_instance_uid": study_instance_uid}).encode(),
                )
                self._studies[key] = state
            if state.total_bytes + len(data) > max_study_bytes:
                raise StudyTooLarge(key)
            association = self.root / INCOMING / key / f"{ASSOCIATION_PREFIX}{association_id}"
            association.mkdir(mode=0o700, exist_ok=True)
            state.pending_bytes[association_id] = state.pending_bytes.get(association_id, 0)
            # Registered before the write, so the study cannot be claimed under it.
            state.last_activity = self._clock()
        name = one_way_key(sop_instance_uid, SOP_KEY_LENGTH) + INSTANCE_SUFFIX
        # Written outside the lock: other associations keep receiving meanwhile. Nothing
        # claims the study while this association is registered on it.
        _write_atomically(association / name, data)
        with self._lock:
            state.pending_bytes[association_id] += len(data)
            state.last_activity = self._clock()
        return key

    def release(self, association_id: str) -> list[tuple[str, int]]:
        """Makes an association's instances part of their studies; returns (key, files) each."""
        committed = []
        with self._lock:
            for state in self._studies_of(association_id):
                folder = self.root / INCOMING / state.key
                association = folder / f"{ASSOCIATION_PREFIX}{association_id}"
                _write_atomically(association / RELEASED_MARKER, b"")
                moved, moved_bytes = _move_instances(association, folder / INSTANCES)
                del state.pending_bytes[association_id]
                state.committed_files = _count(folder / INSTANCES)
                state.committed_bytes += moved_bytes
                state.last_activity = self._clock()
                committed.append((state.key, moved))
                self._forget_if_empty(state)
        return committed

    def discard(self, association_id: str) -> list[tuple[str, int]]:
        """Deletes what an association sent that is not released; returns (key, files) each."""
        dropped = []
        with self._lock:
            for state in self._studies_of(association_id):
                association = (
                    self.root / INCOMING / state.key / (f"{ASSOCIATION_PREFIX}{association_id}")
                )
                files = _count(association)
                shutil.rmtree(association, ignore_errors=True)
                del state.pending_bytes[association_id]
                dropped.append((state.key, files))
                self._forget_if_empty(state)
        return dropped

    def _studies_of(self, association_id: str) -> list[StudyState]:
        return [s for s in self._studies.values() if association_id in s.pending_bytes]

    def _forget_if_empty(self, state: StudyState) -> None:
        if state.committed_files == 0 and not state.receiving:
            shutil.rmtree(self.root / INCOMING / state.key, ignore_errors=True)
            del self._studies[state.key]

    # --- analysis ------------------------------------------------------------------

    def due(self, stable_age_s: float) -> list[str]:
        """Returns the keys of the studies to analyse now (see due_studies)."""
        with self._lock:
            return due_studies(list(self._studies.values()), self._clock(), stable_age_s)

    def claim(self, key: str, stable_age_s: float) -> Job | None:
        """Moves a study that is still due out of `incoming/` into a job; None if it is not.

        Instances of the same study that arrive later start a new study folder, analysed
        on its own once stable.
        """
        with self._lock:
            state = self._studies.get(key)
            if state is None or key not in due_studies([state], self._clock(), stable_age_s):
                return None
            target = self.root / JOBS / f"{key}-{uuid.uuid4().hex[:8]}"
            os.replace(self.root / INCOMING / key, target)
            del self._studies[key]
            return Job(key, state.study_instance_uid, target)

    def finish(self, job: Job) -> None:
        """Deletes a job's folder: its instances, the only copy of patient data here."""
        shutil.rmtree(job.folder, ignore_errors=True)

    def studies(self) -> list[StudyState]:
        """Returns a copy of the state of every study in `incoming/`, for logs and tests."""
        with self._lock:
            return [
                StudyState(
                    s.key,
                    s.study_instance_uid,
                    s.committed_files,
                    s.committed_bytes,
                    dict(s.pending_bytes),
                    s.last_activity,
                )
                for s in self._studies.values()
            ]


def _write_atomically(path: Path, data: bytes) -> None:
    part = path.with_name(path.name + PART_SUFFIX)
    with part.open("wb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(part, path)


def _move_instances(association: Path, instances: Path) -> tuple[int, int]:
    """Renames an association's files into the study; a resent instance replaces the old one."""
    moved = moved_bytes = 0
    instances.mkdir(mode=0o700, exist_ok=True)
    for path in association.glob(f"*{INSTANCE_SUFFIX}"):
        target = instances / path.name
        replaced = target.stat().st_size if target.exists() else 0
        size = path.stat().st_size
        os.replace(path, target)
        moved += 1
        moved_bytes += size - replaced
    shutil.rmtree(association, ignore_errors=True)
    return moved, moved_bytes


def _count(folder: Path) -> int:
    return sum(1 for _ in folder.glob(f"*{INSTANCE_SUFFIX}")) if folder.is_dir() else 0


def _read_study_uid(folder: Path) -> str | None:
    try:
        value = json.loads((folder / STUDY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    uid = value.get("study_instance_uid") if isinstance(value, dict) else None
    return uid if isinstance(uid, str) and uid else None
