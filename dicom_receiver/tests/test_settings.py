"""The receiver's settings: defaults, AE@host:port destinations, and clear refusals."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from dicom_receiver.settings import Peer, ReceiverSettings, parse_destination
from servicekit.settings import SettingsError


def test_the_defaults_listen_on_loopback_and_keep_nothing() -> None:
    settings = ReceiverSettings.from_env({})
    assert (settings.ae_title, settings.port, settings.bind_address) == (
        "MEDIMG",
        11112,
        "127.0.0.1",
    )
    assert settings.gateway_address == "127.0.0.1:50051"
    assert settings.destination is None
    assert settings.stable_age_s == 60.0
    assert settings.spool_dir == Path(tempfile.gettempdir()) / "medimg-dicom-receiver"
    assert settings.max_concurrent_studies == 1


def test_every_variable_is_read() -> None:
    settings = ReceiverSettings.from_env(
        {
            "DICOM_AE_TITLE": "BREAST_AI",
            "DICOM_PORT": "104",
            "DICOM_BIND_ADDRESS": "0.0.0.0",
            "DICOM_GATEWAY_ADDRESS": "gateway:50051",
            "DICOM_DESTINATION": "ORTHANC@pacs.example:4242",
            "DICOM_SPOOL_DIR": "/srv/spool",
            "DICOM_STABLE_AGE_SECONDS": "1.5",
            "DICOM_MAX_ASSOCIATION_BYTES": str(8 * 1024 * 1024),
            "DICOM_MAX_ASSOCIATION_INSTANCES": "50",
            "DICOM_MAX_STUDY_BYTES": str(4 * 1024 * 1024),
            "DICOM_MAX_CONCURRENT_STUDIES": "2",
            "DICOM_RETRY_ATTEMPTS": "3",
        }
    )
    assert settings.ae_title == "BREAST_AI"
    assert settings.port == 104
    assert settings.destination == Peer("ORTHANC", "pacs.example", 4242)
    assert str(settings.destination) == "ORTHANC@pacs.example:4242"
    assert settings.spool_dir == Path("/srv/spool")
    assert settings.stable_age_s == 1.5
    assert settings.max_association_instances == 50
    assert settings.max_concurrent_studies == 2
    assert settings.retry_attempts == 3


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DICOM_AE_TITLE", "A" * 17, "DICOM_AE_TITLE must be 1 to 16"),
        ("DICOM_AE_TITLE", "BAD\\AE", "without a backslash"),
        ("DICOM_PORT", "eleven", "DICOM_PORT must be an integer"),
        ("DICOM_PORT", "70000", "DICOM_PORT must be at most 65535"),
        ("DICOM_GATEWAY_ADDRESS", "gateway", "DICOM_GATEWAY_ADDRESS must be host:port"),
        ("DICOM_DESTINATION", "pacs:4242", "DICOM_DESTINATION must be AE@host:port"),
        ("DICOM_DESTINATION", "PACS@pacs", "DICOM_DESTINATION must be host:port"),
        ("DICOM_DESTINATION", "PACS@pacs:0", "with a port from 1 to 65535"),
        ("DICOM_STABLE_AGE_SECONDS", "0", "DICOM_STABLE_AGE_SECONDS must be at least 0.1"),
        ("DICOM_MAX_STUDY_BYTES", "10", "DICOM_MAX_STUDY_BYTES must be at least"),
        ("DICOM_LOG_FORMAT", "xml", "DICOM_LOG_FORMAT must be one of text, json"),
    ],
)
def test_a_bad_value_is_refused_naming_its_variable(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(SettingsError, match=message.replace("\\", "\\\\")):
        ReceiverSettings.from_env({variable: value})


def test_a_destination_splits_at_the_last_at_sign_and_takes_ipv6() -> None:
    assert parse_destination("D", "") is None
    assert parse_destination("D", "PACS@[::1]:104") == Peer("PACS", "::1", 104)
