"""A real PACS (Orthanc) and medimg (receiver, gateway, mri_service) as processes on loopback."""

from __future__ import annotations

import io
import socket
import subprocess
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pydicom
import pytest
from medimg.v1 import series_analysis_service_pb2 as pb
from medimg.v1 import series_analysis_service_pb2_grpc as pb_grpc
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import MRImageStorage
from pynetdicom import _config

from dicom_receiver.scp import CANNOT_UNDERSTAND, SUCCESS
from dicom_receiver.spool import one_way_key
from dicom_receiver.tests.studies import (
    Study,
    echo,
    phantom_study,
    scu,
    send,
    storescu,
    storescu_command,
    wait_for,
)
from dicom_receiver.tests.test_receiver import _garbage_file
from mri_service.settings import DEFAULT_MODEL_DIR
from mri_service.tests.layouts import Patient
from tests.support.orthanc import Orthanc, running_orthanc
from tests.support.processes import (
    Process,
    free_port,
    start,
    start_gateway,
    start_mri,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (DEFAULT_MODEL_DIR / "model_card.json").is_file(),
        reason="mri_service/models/mri-demo is absent: the end-to-end tests run the shipped models",
    ),
]

RECEIVER_AE = "MEDIMG"
MAX_INSTANCES = 60  # a phantom study is 48 instances: one association may not send 61
CANARY = Patient("CANARY^HERON", "CANARY-ID-4417", "19021130")
# Every form the canary could take in a log line or a file.
CANARY_STRINGS = ("CANARY", "HERON", "19021130", "1902-11-30")
SR_MODALITY, KOS_MODALITY = "SR", "KO"
CHUNK = 64 * 1024


@dataclass
class Receiver:
    """The receiver's process, restartable on the same port and spool, with all its logs."""

    port: int
    env: dict[str, str]
    processes: list[Process] = field(default_factory=list)

    @property
    def process(self) -> Process:
        return self.processes[-1]

    def start(self) -> None:
        process = start("dicom", "dicom_receiver", "DICOM_", env=self.env, port=self.port)
        self.processes.append(process)

        def answers() -> bool:
            if process.popen.poll() is not None:
                raise AssertionError(f"the receiver exited:\n{process.log()}")
            try:
                return echo(self.port) == SUCCESS
            except Exception:
                return False

        wait_for(answers, timeout_s=30, what="the receiver's C-ECHO")

    def log(self) -> str:
        return "\n".join(process.log() for process in self.processes)

    def count(self, text: str) -> int:
        return self.log().count(text)

    def wait_done(self, study: Study | str, *, timeout_s: float = 90) -> None:
        key = one_way_key(study if isinstance(study, str) else study.study_instance_uid)
        wait_for(
            lambda: f"study {key}: done" in self.log() or f"study {key} refused" in self.log(),
            timeout_s=timeout_s,
            what=f"study {key} to be done; the receiver's log:\n{self.log()[-4000:]}",
        )


@pytest.fixture(scope="module")
def mri_spool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mri-spool")


@pytest.fixture(scope="module")
def mri(mri_spool: Path) -> Iterator[Process]:
    process = start_mri(mri_spool, timeout=90)
    yield process
    process.terminate()


@pytest.fixture(scope="module")
def gateway(mri: Process, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    process = start_gateway(f"mri=series@{mri.address}", tmp_path_factory.mktemp("gateway"))
    yield process
    process.terminate()


@pytest.fixture(scope="module")
def receiver_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory, receiver_port: int) -> Iterator[Orthanc]:
    modalities = {"medimg": (RECEIVER_AE, "127.0.0.1", receiver_port)}
    with running_orthanc(tmp_path_factory.mktemp("orthanc"), modalities=modalities) as server:
        yield server


@pytest.fixture(scope="module")
def receiver_spool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("receiver") / "spool"


@pytest.fixture(scope="module")
def receiver(
    gateway: Process, orthanc: Orthanc, receiver_port: int, receiver_spool: Path
) -> Iterator[Receiver]:
    handle = Receiver(
        receiver_port,
        {
            "DICOM_AE_TITLE": RECEIVER_AE,
            "DICOM_GATEWAY_ADDRESS": gateway.address,
            "DICOM_DESTINATION": f"{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}",
            "DICOM_SPOOL_DIR": str(receiver_spool),
            "DICOM_STABLE_AGE_SECONDS": "1",
            "DICOM_MIN_FREE_BYTES": "0",
            "DICOM_MAX_ASSOCIATION_INSTANCES": str(MAX_INSTANCES),
            "DICOM_RETRY_BACKOFF_SECONDS": "0.2",
            # Two studies analysed at once, as the two-sender test has them arrive together.
            "DICOM_MAX_CONCURRENT_STUDIES": "2",
        },
    )
    handle.start()
    yield handle
    assert handle.process.terminate() == 0, handle.process.log()


def store_from_orthanc(orthanc: Orthanc, study: Study) -> dict[str, Any]:
    """Uploads the study to Orthanc, then has Orthanc C-STORE it to medimg."""
    ids = {orthanc.upload(data)["ParentStudy"] for data in study.files()}
    assert len(ids) == 1
    answer: dict[str, Any] = orthanc.post_json(
        "/modalities/medimg/store", {"Resources": sorted(ids), "Synchronous": True}
    )
    assert answer["FailedInstancesCount"] == 0, answer
    return answer


def results(orthanc: Orthanc, study_instance_uid: str) -> dict[str, list[Dataset]]:
    """Returns the SR and KOS objects Orthanc holds for the study, read back with pydicom."""
    study_id = orthanc.find_study(study_instance_uid)
    found: dict[str, list[Dataset]] = {SR_MODALITY: [], KOS_MODALITY: []}
    if study_id is None:
        return found
    for series in orthanc.get_json(f"/studies/{study_id}/series"):
        modality = series["MainDicomTags"].get("Modality")
        if modality in found:
            for instance in series["Instances"]:
                data = orthanc.get_bytes(f"/instances/{instance}/file")
                found[modality].append(pydicom.dcmread(io.BytesIO(data)))
    return found


def referenced_uids(ds: Dataset) -> set[str]:
    """Returns every ReferencedSOPInstanceUID anywhere in the dataset."""
    found: set[str] = set()
    for element in ds.iterall():
        if element.keyword == "ReferencedSOPInstanceUID":
            found.add(str(element.value))
    return found


def assert_reports_reference(orthanc: Orthanc, study: Study) -> dict[str, list[Dataset]]:
    """Checks that one SR and one KOS of the study are in Orthanc, naming its images only."""
    found = results(orthanc, study.study_instance_uid)
    assert len(found[SR_MODALITY]) == 1 and len(found[KOS_MODALITY]) == 1, found
    for ds in (*found[SR_MODALITY], *found[KOS_MODALITY]):
        assert str(ds.StudyInstanceUID) == study.study_instance_uid
        references = referenced_uids(ds)
        assert references and references <= study.sop_instance_uids
    sr = found[SR_MODALITY][0]
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert found[KOS_MODALITY][0].SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.59"
    return found


def listening_addresses(port: int) -> set[str]:
    """Returns the local IPv4 addresses that listen on port, from /proc/net/tcp."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


def test_the_test_orthanc_listens_on_loopback_only(orthanc: Orthanc) -> None:
    if not orthanc.loopback_only:
        pytest.skip("no C compiler here: the test Orthanc listens on 0.0.0.0")
    assert listening_addresses(orthanc.http_port) == {"127.0.0.1"}
    assert listening_addresses(orthanc.dicom_port) == {"127.0.0.1"}
    assert orthanc.get_json("/system")["DicomAet"] == orthanc.aet


def test_the_test_orthanc_serves_a_folder_from_the_origin_of_its_dicomweb(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<h1>viewer</h1>")
    (site / "app.mjs").write_text("export {};")
    with running_orthanc(tmp_path / "orthanc", serve_folders={"/viewer": site}) as server:
        assert server.get_bytes("/viewer/index.html") == b"<h1>viewer</h1>"
        assert server.get_bytes("/viewer/app.mjs") == b"export {};"
        assert server.qido("/studies") == []
    assert server.popen.returncode is not None


def test_orthanc_sends_a_study_and_files_the_report_and_key_images_with_it(
    orthanc: Orthanc, receiver: Receiver, receiver_spool: Path
) -> None:
    study = phantom_study(1)
    store_from_orthanc(orthanc, study)
    receiver.wait_done(study)
    found = assert_reports_reference(orthanc, study)
    uid = study.study_instance_uid
    series = orthanc.qido(f"/studies/{uid}/series")
    modalities = sorted(item["00080060"]["Value"][0] for item in series)
    assert modalities == ["KO", "MR", "MR", "MR", "MR", "SR"]
    sr_series = str(found[SR_MODALITY][0].SeriesInstanceUID)
    (sr_instance,) = orthanc.qido(f"/studies/{uid}/series/{sr_series}/instances")
    assert sr_instance["00080018"]["Value"] == [str(found[SR_MODALITY][0].SOPInstanceUID)]
    key = one_way_key(uid)
    assert f"48 instance(s) of study {key} kept" in receiver.log()
    assert f"study {key}: stored " in receiver.log()
    assert not [path for path in receiver_spool.rglob("*") if path.is_file()]


def test_two_senders_at_once_get_each_study_analysed_once_and_apart(
    orthanc: Orthanc, receiver: Receiver, tmp_path: Path
) -> None:
    from_orthanc, from_scanner = phantom_study(2), phantom_study(3)
    # A second AE (DCMTK's storescu, as a scanner would send) while Orthanc sends its study.
    scanner = subprocess.Popen(
        storescu_command(receiver.port, from_scanner.write(tmp_path), ae_title="SECONDAE"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    store_from_orthanc(orthanc, from_orthanc)
    output, _ = scanner.communicate(timeout=60)
    assert scanner.returncode == 0, output
    for study in (from_orthanc, from_scanner):
        receiver.wait_done(study)
    # Both associations were open at once: each started before either was released.
    lines = receiver.log().splitlines()
    started = [i for i, line in enumerate(lines) if "): receiving study" in line]
    released = [i for i, line in enumerate(lines) if ") released: " in line]
    assert len(started) >= 2
    assert sorted(started)[-1] < released[-2]
    assert any("SECONDAE@127.0.0.1" in lines[i] for i in started)
    assert any("ORTHANC@127.0.0.1" in lines[i] for i in started)
    for study in (from_orthanc, from_scanner):
        key = one_way_key(study.study_instance_uid)
        assert receiver.count(f"study {key} analysed") == 1
        assert receiver.count(f"48 instance(s) of study {key} kept") == 1
        assert_reports_reference(orthanc, study)


def test_a_receiver_killed_mid_study_analyses_nothing_of_it_and_a_resend_succeeds(
    orthanc: Orthanc, receiver: Receiver, receiver_spool: Path, tmp_path: Path
) -> None:
    study = phantom_study(4)
    key = one_way_key(study.study_instance_uid)
    files = study.write(tmp_path)
    # The study ten times over in one association: long enough to be killed in the middle.
    sender = subprocess.Popen(
        storescu_command(receiver.port, files * 10, ae_title="KILLEDSCU"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            lambda: len(list(receiver_spool.rglob("assoc-*/*.dcm"))) >= 20,
            timeout_s=30,
            what="20 instances of the open association",
        )
        receiver.process.kill()
        sender.wait(timeout=30)
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.wait()
    assert sender.returncode != 0
    receiver.start()
    assert "discarded 1 association(s) that were still open" in receiver.process.log()
    assert not list(receiver_spool.rglob("*.dcm"))
    time.sleep(2.0)  # past the stable age: a half study, were it kept, would be due by now
    assert f"study {key}" not in receiver.process.log()
    assert f"study {key} analysed" not in receiver.log()
    assert orthanc.find_study(study.study_instance_uid) is None

    sent = storescu(receiver.port, files, ae_title="KILLEDSCU")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    receiver.wait_done(study)
    assert receiver.count(f"study {key} analysed") == 1
    assert_reports_reference(orthanc, study)


def test_bad_associations_and_files_are_refused_with_the_reason_logged_and_it_survives(
    receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = phantom_study(5)
    key = one_way_key(study.study_instance_uid)
    no_uid = pydicom.dcmread(io.BytesIO(study.files()[0]))
    del no_uid.StudyInstanceUID
    assert send(receiver.port, [no_uid]) == [CANNOT_UNDERSTAND]

    with monkeypatch.context() as patch:
        patch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
        assoc = scu(receiver.port, [MRImageStorage])
        garbage = _garbage_file(tmp_path / "garbage.dcm", "1.2.3.4.5.6.7")
        assert int(assoc.send_c_store(garbage).Status) == CANNOT_UNDERSTAND
        assoc.release()

    # One association of 61 instances: the 61st is refused and the association aborted.
    files = study.write(tmp_path / "study")
    greedy = storescu(receiver.port, [*files, *files[: MAX_INSTANCES + 1 - 48]], ae_title="GREEDY")
    assert greedy.returncode != 0

    # Not a DICOM association at all.
    with socket.create_connection(("127.0.0.1", receiver.port), timeout=5) as junk:
        junk.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 500)
        junk.settimeout(1)
        try:
            while junk.recv(4096):
                pass
        except OSError:
            pass

    # A CT image: DICOM and stored, but no breast DCE study: the service refuses it.
    ct_path = get_testdata_file("CT_small.dcm")
    assert isinstance(ct_path, str)
    ct = pydicom.dcmread(ct_path)
    assert send(receiver.port, [ct]) == [SUCCESS]
    receiver.wait_done(str(ct.StudyInstanceUID))

    assert receiver.process.popen.poll() is None
    assert echo(receiver.port) == SUCCESS
    log = receiver.log()
    assert "instance refused with status 0xC000: no StudyInstanceUID" in log
    # Garbage after a valid file meta: pydicom's lazy parse finds no UID in it, or fails.
    assert log.count("(TESTSCU@127.0.0.1): instance refused with status 0xC000") == 2
    # pynetdicom's line per 6 junk bytes is capped.
    assert log.count("Unknown PDU type received") <= 21
    assert f"more than {MAX_INSTANCES} instances in one association" in log
    assert f"48 instance(s) of study {key} discarded" in log
    assert f"study {key} analysed" not in log
    ct_key = one_way_key(str(ct.StudyInstanceUID))
    assert f"study {ct_key} refused by the service: INVALID_ARGUMENT (SERIES_" in log
    assert "Traceback" not in log


def _assert_no_canary(folders: list[Path], processes: list[Process]) -> None:
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert not [c for c in CANARY_STRINGS if c.encode() in data], path
    for process in processes:
        for line in process.log().splitlines():
            assert not [c for c in CANARY_STRINGS if c in line], f"{process.name}: {line}"


def test_the_canary_sent_by_c_store_stays_out_of_spools_and_logs_but_is_in_the_report(
    orthanc: Orthanc,
    receiver: Receiver,
    receiver_spool: Path,
    gateway: Process,
    mri: Process,
    mri_spool: Path,
    tmp_path: Path,
) -> None:
    study = phantom_study(6, patient=CANARY)
    sent = storescu(receiver.port, study.write(tmp_path), ae_title="WARD7SCU")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    receiver.wait_done(study)
    found = assert_reports_reference(orthanc, study)
    _assert_no_canary([receiver_spool, mri_spool], [*receiver.processes, gateway, mri])
    # The report is meant for the PACS: it names the patient it is about.
    sr = found[SR_MODALITY][0]
    assert (str(sr.PatientName), sr.PatientID, sr.PatientBirthDate) == (
        CANARY.name,
        CANARY.patient_id,
        CANARY.birth_date,
    )


def test_the_canary_streamed_to_the_gateway_leaves_no_trace_in_the_service(
    gateway: Process, mri: Process, mri_spool: Path
) -> None:
    study = phantom_study(7, patient=CANARY)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index, data in enumerate(study.files()):
            archive.writestr(f"study/IM{index:04d}.dcm", data)
    data = buffer.getvalue()

    def messages() -> Iterator[pb.AnalyzeSeriesRequest]:
        meta = pb.SeriesUploadMetadata(
            disease="mri", total_size_bytes=len(data), dicom_reports=True
        )
        yield pb.AnalyzeSeriesRequest(metadata=meta)
        for start_at in range(0, len(data), CHUNK):
            yield pb.AnalyzeSeriesRequest(chunk_data=data[start_at : start_at + CHUNK])

    with grpc.insecure_channel(gateway.address) as channel:
        response = pb_grpc.SeriesAnalysisServiceStub(channel).AnalyzeSeries(messages(), timeout=120)
    assert response.slice_count == 12
    report = pydicom.dcmread(io.BytesIO(response.dicom_reports.measurement_report))
    assert str(report.PatientName) == CANARY.name
    assert list(mri_spool.iterdir()) == []
    _assert_no_canary([mri_spool], [gateway, mri])
