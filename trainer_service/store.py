"""Projects, examples, jobs and models on disk: atomic writes, content-hash file names."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from servicekit.errors import InvalidArgument
from trainer_service import names
from trainer_service.errors import ProjectNotFound, TooManyExamples
from trainer_service.model import write_json_atomic

PROJECT_FILE = "project.json"
_EXTENSIONS = {"JPEG": "jpg", "PNG": "png"}


@dataclass(frozen=True)
class Project:
    """One project as stored: its labels and what it has produced."""

    project_id: str
    display_name: str
    labels: tuple[str, ...]
    create_time: float  # seconds since the epoch
    latest_training_job: str = ""  # job id of the latest SUCCEEDED job
    published_disease: str = ""

    @property
    def name(self) -> str:
        """Returns the resource name, "projects/{project_id}"."""
        return names.project_name(self.project_id)


@dataclass(frozen=True)
class Example:
    """One stored example: its label's index, its file and the hash of its bytes."""

    label_index: int
    path: Path
    sha256: str


class Store:
    """The trainer's data directory; every method is safe to call from any thread."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.projects_dir = data_dir / "projects"
        self.published_dir = data_dir / "published"
        self.staging_dir = data_dir / "staging"
        self._lock = threading.RLock()
        for directory in (self.projects_dir, self.published_dir, self.staging_dir):
            directory.mkdir(parents=True, exist_ok=True)
        # An upload cut off by a crash left only staging files: they were never examples.
        for leftover in self.staging_dir.iterdir():
            shutil.rmtree(leftover, ignore_errors=True)

    def project_dir(self, project_id: str) -> Path:
        """Returns the directory of a project (which may not exist)."""
        return self.projects_dir / project_id

    def create_project(self, display_name: str, labels: tuple[str, ...]) -> Project:
        """Creates and returns a new project with a fresh id."""
        with self._lock:
            project_id = names.new_id()
            while self.project_dir(project_id).exists():
                project_id = names.new_id()
            project = Project(project_id, display_name, labels, time.time())
            self._write_project(project)
            return project

    def get_project(self, project_id: str) -> Project:
        """Returns the project; ProjectNotFound when there is none."""
        path = self.project_dir(project_id) / PROJECT_FILE
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise ProjectNotFound(f"there is no project {names.project_name(project_id)}") from None
        raw["labels"] = tuple(raw["labels"])
        return Project(**raw)

    def list_projects(self) -> list[Project]:
        """Returns every project, newest first."""
        projects = []
        for directory in self.projects_dir.iterdir():
            if names.is_id(directory.name) and (directory / PROJECT_FILE).is_file():
                projects.append(self.get_project(directory.name))
        return sorted(projects, key=lambda project: project.create_time, reverse=True)

    def update_project(self, project_id: str, **changes: Any) -> Project:
        """Returns the project after changing some of its fields on disk."""
        with self._lock:
            project = replace(self.get_project(project_id), **changes)
            self._write_project(project)
            return project

    def delete_project(self, project_id: str) -> None:
        """Removes the project with its examples, jobs and models."""
        with self._lock:
            self.get_project(project_id)
            # Renamed away first, so that a crash mid-delete leaves no half project behind.
            doomed = self.staging_dir / f"deleted-{project_id}"
            os.replace(self.project_dir(project_id), doomed)
        shutil.rmtree(doomed, ignore_errors=True)

    def examples(self, project_id: str) -> list[Example]:
        """Returns the project's examples, by label then hash."""
        project = self.get_project(project_id)
        found = []
        for index in range(len(project.labels)):
            folder = self._examples_dir(project_id, index)
            for path in sorted(folder.iterdir()) if folder.is_dir() else ():
                if not path.name.startswith("."):
                    found.append(Example(index, path, path.stem))
        return found

    def example_counts(self, project_id: str) -> tuple[int, ...]:
        """Returns the number of examples per label, in label order."""
        project = self.get_project(project_id)
        counts = [0] * len(project.labels)
        for example in self.examples(project_id):
            counts[example.label_index] += 1
        return tuple(counts)

    def begin_upload(self, project_id: str, max_per_label: int) -> Upload:
        """Returns an upload that stores nothing until it is committed."""
        project = self.get_project(project_id)
        staging = Path(tempfile.mkdtemp(dir=self.staging_dir, prefix=f"upload-{project_id}-"))
        return Upload(self, project, staging, max_per_label)

    def save_job(self, project_id: str, job_id: str, document: dict[str, Any]) -> None:
        """Writes a job's JSON record, unless its project was deleted meanwhile."""
        with self._lock:
            if self.project_dir(project_id).is_dir():
                write_json_atomic(
                    self.project_dir(project_id) / "jobs" / f"{job_id}.json", document
                )

    def load_jobs(self) -> list[dict[str, Any]]:
        """Returns every job record on disk."""
        records = []
        for path in self.projects_dir.glob("*/jobs/*.json"):
            try:
                records.append(json.loads(path.read_text()))
            except (OSError, json.JSONDecodeError):
                continue  # atomic writes make this a stray file, not a lost job
        return records

    def model_dir(self, project_id: str, job_id: str) -> Path:
        """Returns where a job's trained model lives."""
        return self.project_dir(project_id) / "models" / job_id

    def published_model_dir(self, disease: str) -> Path:
        """Returns where the model published under a disease lives."""
        return self.published_dir / disease

    def _examples_dir(self, project_id: str, label_index: int) -> Path:
        return self.project_dir(project_id) / "examples" / f"{label_index:02d}"

    def _write_project(self, project: Project) -> None:
        write_json_atomic(self.project_dir(project.project_id) / PROJECT_FILE, asdict(project))

    def _commit(self, upload: Upload) -> tuple[int, tuple[int, ...]]:
        with self._lock:
            project_id = upload.project.project_id
            self.get_project(project_id)  # deleted while the upload streamed in
            existing = {(e.label_index, e.sha256) for e in self.examples(project_id)}
            new = {key: path for key, path in upload.staged.items() if key not in existing}
            counts = [0] * len(upload.project.labels)
            for label_index, _ in existing | set(new):
                counts[label_index] += 1
            for index, count in enumerate(counts):
                if count > upload.max_per_label:
                    raise TooManyExamples(
                        f"label {upload.project.labels[index]!r} would have {count} examples; "
                        f"the limit is {upload.max_per_label}"
                    )
            for (label_index, digest), path in new.items():
                folder = self._examples_dir(project_id, label_index)
                folder.mkdir(parents=True, exist_ok=True)
                os.replace(path, folder / f"{digest}{path.suffix}")
            return len(new), tuple(counts)


class Upload:
    """Examples of one UploadExamples call, staged until all of them have been checked."""

    def __init__(self, store: Store, project: Project, staging: Path, max_per_label: int) -> None:
        self.store = store
        self.project = project
        self.staging = staging
        self.max_per_label = max_per_label
        self.staged: dict[tuple[int, str], Path] = {}
        self._per_label = [0] * len(project.labels)

    def label_index(self, label: str, position: int) -> int:
        """Returns the index of a label of the project; InvalidArgument naming the message."""
        try:
            return self.project.labels.index(label.strip())
        except ValueError:
            raise InvalidArgument(
                f"example {position}: label {label!r} is not one of the project's labels"
            ) from None

    def add(self, label_index: int, data: bytes, image_format: str) -> None:
        """Stages one checked example; TooManyExamples early when one upload alone is too big."""
        digest = hashlib.sha256(data).hexdigest()
        if (label_index, digest) in self.staged:
            return
        self._per_label[label_index] += 1
        if self._per_label[label_index] > self.max_per_label:
            raise TooManyExamples(
                f"label {self.project.labels[label_index]!r} can hold at most "
                f"{self.max_per_label} examples"
            )
        path = self.staging / f"{label_index:02d}-{digest}.{_EXTENSIONS[image_format]}"
        path.write_bytes(data)
        self.staged[(label_index, digest)] = path

    def commit(self) -> tuple[int, tuple[int, ...]]:
        """Moves the staged examples into the project; returns (stored count, counts per label)."""
        try:
            return self.store._commit(self)
        finally:
            self.discard()

    def discard(self) -> None:
        """Removes what was staged; the project is unchanged."""
        shutil.rmtree(self.staging, ignore_errors=True)


def data_hash(examples: list[Example]) -> str:
    """Returns a hash that changes whenever an example or its label changes."""
    digest = hashlib.sha256()
    for example in sorted(examples, key=lambda e: (e.label_index, e.sha256)):
        digest.update(f"{example.label_index}:{example.sha256}\n".encode())
    return digest.hexdigest()
