"""The receiver in this process, its SCP on a free port, driven by a real pynetdicom SCU."""

from __future__ import annotations

import copy
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, MRImageStorage
from pynetdicom import _config

from dicom_receiver.receiver import Receiver
from dicom_receiver.scp import CANNOT_UNDERSTAND, OUT_OF_RESOURCES, SUCCESS
from dicom_receiver.settings import ReceiverSettings
from dicom_receiver.spool import INCOMING, INSTANCES, Spool, one_way_key
from dicom_receiver.tests.studies import Study, echo, phantom_study, scu, send, wait_for
from tests.support.processes import free_port

LIMIT_INSTANCES = 12


@pytest.fixture(scope="module")
def study() -> Study:
    return phantom_study(101)


def _receiver(spool: Path, **env: str) -> Receiver:
    settings = ReceiverSettings.from_env(
        {
            "DICOM_PORT": "0",
            "DICOM_SPOOL_DIR": str(spool),
            "DICOM_MIN_FREE_BYTES": "0",
            "DICOM_MAX_ASSOCIATION_INSTANCES": str(LIMIT_INSTANCES),
            # Nothing listens there: a study that becomes stable meets a gateway that is down.
            "DICOM_GATEWAY_ADDRESS": f"127.0.0.1:{free_port()}",
            "DICOM_STABLE_AGE_SECONDS": "3600",
            **{f"DICOM_{key.upper()}": value for key, value in env.items()},
        }
    )
    return Receiver(settings)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    started = _receiver(tmp_path / "spool")
    started.start()
    yield started
    started.stop(grace_s=2)


def _instances(receiver: Receiver, study_uid: str) -> list[Path]:
    folder = receiver.spool.root / INCOMING / one_way_key(study_uid) / INSTANCES
    return sorted(folder.glob("*.dcm")) if folder.is_dir() else []


def test_it_answers_c_echo_and_keeps_a_released_association_whole(
    receiver: Receiver, study: Study
) -> None:
    assert echo(receiver.port) == SUCCESS
    statuses = send(receiver.port, study.datasets[:10])
    assert statuses == [SUCCESS] * 10
    # The SCP commits as it answers the A-RELEASE: the SCU may be told a moment before.
    wait_for(
        lambda: len(_instances(receiver, study.study_instance_uid)) == 10,
        timeout_s=5,
        what="the commit",
    )
    kept = _instances(receiver, study.study_instance_uid)
    read = pydicom.dcmread(kept[0])
    assert str(read.StudyInstanceUID) == study.study_instance_uid
    assert read.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian


def test_an_aborted_association_leaves_nothing(receiver: Receiver, study: Study) -> None:
    assoc = scu(receiver.port, [MRImageStorage])
    for ds in study.datasets[:5]:
        assert assoc.send_c_store(ds).Status == SUCCESS
    assert receiver.spool.studies()[0].receiving
    assoc.abort()
    wait_for(lambda: not receiver.spool.studies(), timeout_s=5, what="the discard")
    assert not (receiver.spool.root / INCOMING / one_way_key(study.study_instance_uid)).exists()


def _garbage_file(path: Path, sop_instance_uid: str) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.save_as(path, enforce_file_format=True)
    with path.open("ab") as stream:
        stream.write(b"\x08\x00\x18\x00UI\xff\xffthis is not DICOM at all " * 40)
    return path


def test_bad_instances_are_refused_and_the_association_goes_on(
    receiver: Receiver,
    study: Study,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="dicom_receiver")
    no_study = copy.deepcopy(study.datasets[0])
    del no_study.StudyInstanceUID
    bad_uid = copy.deepcopy(study.datasets[1])
    with pytest.warns(UserWarning):
        bad_uid[0x0020000E].value = "CANARY^HERON"
    statuses = send(receiver.port, [no_study, bad_uid, study.datasets[2]])
    assert statuses == [CANNOT_UNDERSTAND, CANNOT_UNDERSTAND, SUCCESS]
    wait_for(
        lambda: len(_instances(receiver, study.study_instance_uid)) == 1,
        timeout_s=5,
        what="the commit",
    )
    # Bytes that are no data set at all, sent as they are (pynetdicom does not decode them).
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    garbage = _garbage_file(tmp_path / "garbage.dcm", "1.2.3.4.5.6")
    assoc = scu(receiver.port, [MRImageStorage])
    assert int(assoc.send_c_store(garbage).Status) == CANNOT_UNDERSTAND
    assoc.release()
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("dicom_receiver"))
    assert "refused with status 0xC000: no StudyInstanceUID" in text
    assert "SeriesInstanceUID is not a valid UID" in text
    assert "not a readable DICOM data set" in text or "no StudyInstanceUID" in text
    assert "CANARY" not in text
    assert echo(receiver.port) == SUCCESS


def test_an_association_past_its_instance_limit_is_refused_aborted_and_discarded(
    receiver: Receiver, study: Study, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dicom_receiver")
    datasets = study.datasets[: LIMIT_INSTANCES + 1]
    assoc = scu(receiver.port, [MRImageStorage])
    statuses = []
    for ds in datasets:
        answer = assoc.send_c_store(ds)
        statuses.append(int(answer.Status) if "Status" in answer else -1)
        if not assoc.is_established:
            break
    assert statuses[:LIMIT_INSTANCES] == [SUCCESS] * LIMIT_INSTANCES
    assert statuses[LIMIT_INSTANCES] in (OUT_OF_RESOURCES, -1)  # the abort may overtake it
    wait_for(lambda: assoc.is_aborted, timeout_s=5, what="the receiver's A-ABORT")
    wait_for(lambda: not receiver.spool.studies(), timeout_s=5, what="the discard")
    assert f"more than {LIMIT_INSTANCES} instances in one association" in caplog.text
    assert echo(receiver.port) == SUCCESS


def test_an_association_to_another_ae_title_or_a_stream_of_junk_is_turned_away(
    receiver: Receiver,
) -> None:
    assert not scu(receiver.port, [MRImageStorage], called="SOMEONE_ELSE").is_established
    with socket.create_connection(("127.0.0.1", receiver.port), timeout=5) as junk:
        junk.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 10)
        junk.settimeout(5)
        try:
            while junk.recv(4096):
                pass
        except OSError:
            pass  # closed by the receiver: what is wanted
    assert echo(receiver.port) == SUCCESS


def test_a_stable_study_meeting_a_gateway_that_is_down_is_retried_then_dropped(
    tmp_path: Path, study: Study, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dicom_receiver")
    receiver = _receiver(
        tmp_path / "spool",
        stable_age_seconds="0.2",
        retry_attempts="2",
        retry_backoff_seconds="0.05",
    )
    receiver.start()
    try:
        assert send(receiver.port, study.datasets[:4]) == [SUCCESS] * 4
        wait_for(lambda: "on all 2 attempts" in caplog.text, timeout_s=20, what="the last attempt")
        wait_for(
            lambda: not any((tmp_path / "spool").rglob("*.dcm")),
            timeout_s=5,
            what="the spool to be emptied",
        )
    finally:
        receiver.stop(grace_s=2)
    assert "UNAVAILABLE" in caplog.text
    assert "(attempt 1 of 2); trying again in 0.1 s" in caplog.text
    assert os.listdir(tmp_path / "spool" / "jobs") == []


def test_a_stop_aborts_an_open_association_and_nothing_of_it_survives_a_restart(
    tmp_path: Path, study: Study
) -> None:
    first = _receiver(tmp_path / "spool")
    first.start()
    assoc = scu(first.port, [MRImageStorage])
    for ds in study.datasets[:3]:
        assert assoc.send_c_store(ds).Status == SUCCESS
    first.stop(grace_s=1)
    wait_for(lambda: not assoc.is_established, timeout_s=5, what="the abort")
    second = _receiver(tmp_path / "spool")
    second.start()
    try:
        assert second.spool.studies() == []
        assert not list((tmp_path / "spool").rglob("*.dcm"))
    finally:
        second.stop(grace_s=1)


def test_a_job_interrupted_by_a_stop_keeps_its_study_for_the_next_start(
    tmp_path: Path, study: Study, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dicom_receiver")
    # A listener that accepts and never answers: the AnalyzeSeries call hangs in flight.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        first = _receiver(
            tmp_path / "spool",
            stable_age_seconds="0.2",
            gateway_address=f"127.0.0.1:{silent.getsockname()[1]}",
        )
        first.start()
        assert send(first.port, study.datasets[:4]) == [SUCCESS] * 4
        wait_for(lambda: "analysing" in caplog.text, timeout_s=10, what="the job to start")
        first.stop(grace_s=0.5)
        wait_for(
            lambda: "interrupted by the stop" in caplog.text, timeout_s=10, what="the interrupt"
        )
    assert "refused by the service" not in caplog.text
    jobs, _ = Spool(tmp_path / "spool").recover()
    assert [job.study_instance_uid for job in jobs] == [study.study_instance_uid]
    assert len(jobs[0].files()) == 4
