"""Test studies (phantom MR series as DICOM datasets) and the SCUs that send them.

Two SCUs: pynetdicom's, for associations whose every status a test checks, and DCMTK's
`storescu` (installed with Orthanc by scripts/install_dicom_tools.sh), for whole studies.
pynetdicom's requestor has a rare race in 3.0.4 (its reactor thread can take a C-STORE
response before `send_c_store` sees it: "Received unexpected C-STORE service message",
then a DIMSE timeout), so the long associations go through storescu, as a modality would.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.association import Association

from mri_service.phantom import PhantomSpec, dicom_files, generate_series
from mri_service.tests.layouts import Patient, apply_patient

VERIFICATION = "1.2.840.10008.1.1"
# Small enough that Orthanc sends a study in about two seconds and the models read it in
# one, large enough (four phases of 12 slices) for the service to find the DCE acquisition.
SLICES = 12
SIZE = 64


@dataclass(frozen=True)
class Study:
    """A phantom breast-MRI study: its datasets and their encoded Part-10 files."""

    datasets: tuple[Dataset, ...]

    @property
    def study_instance_uid(self) -> str:
        """Returns the StudyInstanceUID every dataset shares."""
        return str(self.datasets[0].StudyInstanceUID)

    @property
    def sop_instance_uids(self) -> set[str]:
        """Returns the SOPInstanceUIDs of the study's images."""
        return {str(ds.SOPInstanceUID) for ds in self.datasets}

    def files(self) -> list[bytes]:
        """Returns every dataset as a Part-10 file."""
        return [encode(ds) for ds in self.datasets]

    def write(self, folder: Path) -> list[Path]:
        """Writes every dataset as folder/IMnnnn.dcm and returns the paths in order."""
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for index, data in enumerate(self.files()):
            path = folder / f"IM{index:04d}.dcm"
            path.write_bytes(data)
            paths.append(path)
        return paths


def phantom_study(seed: int, *, patient: Patient | None = None, lesion: bool = True) -> Study:
    """Returns a four-phase phantom study; the seed makes its UIDs, patient its identity."""
    series = generate_series(PhantomSpec(slices=SLICES, size=SIZE, lesion=lesion, seed=seed))
    datasets = [pydicom.dcmread(io.BytesIO(data)) for _, data in dicom_files(series)]
    if patient is not None:
        apply_patient(datasets, patient)
    return Study(tuple(datasets))


def encode(ds: Dataset) -> bytes:
    """Returns a dataset as a Part-10 file."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def scu(
    port: int,
    sop_classes: Iterable[str],
    *,
    ae_title: str = "TESTSCU",
    called: str = "MEDIMG",
) -> Association:
    """Opens an association to the receiver on 127.0.0.1:port, proposing the given classes."""
    ae = AE(ae_title=ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    for sop_class in dict.fromkeys(sop_classes):
        ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    return ae.associate("127.0.0.1", port, ae_title=called)


def send(
    port: int,
    datasets: Sequence[Dataset],
    *,
    ae_title: str = "TESTSCU",
    between: Callable[[int], None] | None = None,
) -> list[int]:
    """Sends datasets in one association and releases it; returns each C-STORE status."""
    assoc = scu(port, (str(ds.SOPClassUID) for ds in datasets), ae_title=ae_title)
    assert assoc.is_established, "the receiver did not accept the association"
    statuses = []
    try:
        for index, ds in enumerate(datasets):
            answer = assoc.send_c_store(ds)
            statuses.append(int(answer.Status) if "Status" in answer else -1)
            if between is not None:
                between(index)
    finally:
        if assoc.is_established:
            assoc.release()
    return statuses


def echo(port: int) -> int:
    """Returns the status of a C-ECHO to the receiver (0 when it answers), -1 without one."""
    assoc = scu(port, [VERIFICATION])
    if not assoc.is_established:
        return -1
    try:
        answer = assoc.send_c_echo()
        return int(answer.Status) if "Status" in answer else -1
    finally:
        assoc.release()


def storescu_command(
    port: int, files: Sequence[Path], *, ae_title: str, called: str = "MEDIMG"
) -> list[str]:
    """Returns DCMTK's storescu command sending files in one association to 127.0.0.1:port."""
    binary = shutil.which("storescu")
    assert binary, "storescu (DCMTK) is missing: scripts/install_dicom_tools.sh installs it"
    return [binary, "-aet", ae_title, "-aec", called, "127.0.0.1", str(port), *map(str, files)]


def storescu(
    port: int, files: Sequence[Path], *, ae_title: str, called: str = "MEDIMG"
) -> subprocess.CompletedProcess[str]:
    """Sends files with storescu in one association; returns the finished process."""
    return subprocess.run(
        storescu_command(port, files, ae_title=ae_title, called=called),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def wait_for(condition: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    """Polls condition every 0.1 s; fails with what after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
