"""The receiver's pure pieces: UID checks, limits, stability, backoff, the zip and the contexts."""

from __future__ import annotations

import io
import logging
import zipfile
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from dicom_receiver.analysis import zip_chunks
from dicom_receiver.contexts import MAX_CONTEXTS, PRIORITY_SOP_CLASSES, supported_contexts
from dicom_receiver.logs import RepeatLimiter
from dicom_receiver.receiver import MAX_BACKOFF_S, backoff_s
from dicom_receiver.scp import (
    CANNOT_UNDERSTAND,
    OUT_OF_RESOURCES,
    AssociationState,
    Refusal,
    check_limits,
    read_uids,
    valid_uid,
)
from dicom_receiver.settings import ReceiverSettings
from dicom_receiver.spool import StudyState, due_studies, one_way_key

MIB = 1024 * 1024


def test_uids_are_digits_and_dots_of_at_most_64_characters() -> None:
    assert valid_uid("1.2.840.10008.5.1.4.1.1.4")
    assert valid_uid("1.2.03.4")  # leading zeros: forbidden by PS3.5 but seen in the wild
    assert not valid_uid("1.2." + "3" * 61)
    assert not valid_uid("../../etc")
    assert not valid_uid("1..2")
    assert not valid_uid("")


def test_an_instance_without_its_uids_is_refused_naming_the_attribute_only() -> None:
    ds = Dataset()
    ds.StudyInstanceUID = "1.2.3"
    ds.SeriesInstanceUID = "1.2.3.4"
    ds.SOPInstanceUID = "1.2.3.4.5"
    assert read_uids(ds) == ("1.2.3", "1.2.3.4", "1.2.3.4.5")
    del ds.SeriesInstanceUID
    assert read_uids(ds) == Refusal(CANNOT_UNDERSTAND, "no SeriesInstanceUID")
    with pytest.warns(UserWarning, match="Invalid value for VR UI"):
        ds.SeriesInstanceUID = "CANARY^HERON"
    refusal = read_uids(ds)
    assert refusal == Refusal(CANNOT_UNDERSTAND, "SeriesInstanceUID is not a valid UID")


def _settings(**env: str) -> ReceiverSettings:
    return ReceiverSettings.from_env({f"DICOM_{k.upper()}": v for k, v in env.items()})


def test_limits_refuse_with_out_of_resources_and_abort() -> None:
    settings = _settings(
        max_association_instances="3", max_association_bytes=str(MIB), min_free_bytes=str(MIB)
    )
    state = AssociationState("a", "SCU@127.0.0.1")
    assert check_limits(state, 1000, settings, free_bytes=10 * MIB) is None
    state.instances = 3
    refusal = check_limits(state, 1000, settings, free_bytes=10 * MIB)
    assert refusal is not None and refusal.status == OUT_OF_RESOURCES and refusal.abort
    assert "more than 3 instances" in refusal.reason
    state.instances, state.received_bytes = 0, MIB + 1
    refusal = check_limits(state, 1000, settings, free_bytes=10 * MIB)
    assert refusal is not None and f"more than {MIB} bytes" in refusal.reason
    state.received_bytes = 0
    refusal = check_limits(state, 1000, settings, free_bytes=MIB + 999)
    assert refusal is not None and "left free" in refusal.reason


def test_a_study_is_due_when_quiet_for_the_stable_age_and_nobody_sends_to_it() -> None:
    quiet = StudyState("a", "1.1", committed_files=3, last_activity=10.0)
    recent = StudyState("b", "1.2", committed_files=3, last_activity=19.5)
    arriving = StudyState("c", "1.3", committed_files=3, pending_bytes={"x": 0}, last_activity=0.0)
    empty = StudyState("d", "1.4", committed_files=0, last_activity=0.0)
    older = StudyState("e", "1.5", committed_files=1, last_activity=5.0)
    states = [quiet, recent, arriving, empty, older]
    assert due_studies(states, now=20.0, stable_age_s=2.0) == ["e", "a"]
    assert due_studies(states, now=20.0, stable_age_s=14.5) == ["e"]


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff_s(n, 1.0) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert backoff_s(30, 1.0) == MAX_BACKOFF_S


def test_the_study_is_zipped_flat_by_file_name_while_it_is_sent(tmp_path: Path) -> None:
    files = []
    for index in range(5):
        path = tmp_path / f"{one_way_key(str(index), 32)}.dcm"
        path.write_bytes(bytes([index]) * (100_000 + index))
        files.append(path)
    chunks = list(zip_chunks(files, chunk_bytes=64 * 1024))
    assert len(chunks) > 5  # streamed, not built whole first
    with zipfile.ZipFile(io.BytesIO(b"".join(chunks))) as archive:
        assert archive.namelist() == [path.name for path in files]
        assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())
        assert archive.read(files[3].name) == files[3].read_bytes()


def test_the_contexts_fill_the_cap_and_hold_mr_and_the_result_objects() -> None:
    contexts = supported_contexts()
    classes = [str(c.abstract_syntax) for c in contexts]
    assert len(contexts) == MAX_CONTEXTS
    assert len(set(classes)) == len(classes)
    assert classes[0] == "1.2.840.10008.1.1"  # Verification
    for required in PRIORITY_SOP_CLASSES:
        assert str(required) in classes
    mr = next(c for c in contexts if c.abstract_syntax == "1.2.840.10008.5.1.4.1.1.4")
    assert "1.2.840.10008.1.2.4.90" in mr.transfer_syntax  # JPEG 2000: the service decodes it
    assert "1.2.840.10008.1.2.1.99" not in mr.transfer_syntax  # deflated: it does not


@pytest.mark.parametrize("uid", ["1.2.3", "1.2.840.99999.1"])
def test_the_study_key_is_short_and_one_way(uid: str) -> None:
    key = one_way_key(uid)
    assert len(key) == 16 and uid not in key and key == one_way_key(uid)


def test_repeated_log_lines_are_capped_per_window_and_the_drop_is_counted() -> None:
    now = [0.0]
    limiter = RepeatLimiter(burst=3, window_s=10.0, clock=lambda: now[0])

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("pynetdicom.dul", logging.ERROR, "", 0, msg, (), None)

    junk = [limiter.filter(record("Unknown PDU type received '0x%02X'")) for _ in range(10)]
    assert junk == [True] * 3 + [False] * 7
    assert limiter.filter(record("another line"))
    now[0] = 10.0
    first = record("Unknown PDU type received '0x%02X'")
    assert limiter.filter(first)
    assert getattr(first, "suppressed", None) == 7
