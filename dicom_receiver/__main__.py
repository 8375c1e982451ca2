"""Runs the DICOM receiver: `python -m dicom_receiver`, configured by DICOM_* variables."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

import pydicom.config

from dicom_receiver.logs import limit_repeats
from dicom_receiver.receiver import Receiver
from dicom_receiver.settings import ReceiverSettings
from servicekit.logging_setup import install_logging
from servicekit.main import run_with_settings

LOG = logging.getLogger("dicom_receiver")


def main() -> int:
    """Receives until SIGTERM or SIGINT; returns 2 on a bad setting, 1 if it cannot listen."""
    return run_with_settings("dicom_receiver", ReceiverSettings.from_env, receive)


def receive(settings: ReceiverSettings) -> int:
    """Receives with the settings until SIGTERM or SIGINT; returns 1 if it cannot listen."""
    install_logging(component="dicom", level=settings.log_level, log_format=settings.log_format)
    limit_repeats()
    # pynetdicom's own INFO and DEBUG lines dump PDUs and DIMSE messages (C-FIND identifiers
    # among them); only its warnings and errors are let through, so no header leaks.
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    # pydicom's warnings about a malformed value quote the value, which may be a name or a
    # birth date: values are not validated on reading here (the service validates what it
    # reads), and pydicom's own log lines below errors are dropped.
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        receiver = Receiver(settings)
        receiver.start()
    except OSError as exc:
        LOG.error(
            "cannot listen on %s:%d or use %s: %s",
            settings.bind_address,
            settings.port,
            settings.spool_dir,
            exc.strerror or exc,
        )
        return 1
    destination = settings.destination or "nowhere (DICOM_DESTINATION is empty)"
    LOG.info(
        "analysing stable studies (%.1f s without a new instance) through %s; results go to %s",
        settings.stable_age_s,
        settings.gateway_address,
        destination,
    )
    while not stopping.wait(1.0):
        pass
    LOG.info("stopping")
    receiver.stop()
    LOG.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
