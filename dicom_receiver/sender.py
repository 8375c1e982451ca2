"""Sends the result objects (SR, KOS) to DICOM_DESTINATION with C-STORE, as an SCU."""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE

from dicom_receiver.settings import Peer

LOG = logging.getLogger("dicom_receiver.sender")

# Success, and the warnings a PACS gives for objects it kept (PS3.4 B.2.3).
STORED_STATUSES = frozenset({0x0000, 0xB000, 0xB006, 0xB007})


@dataclass
class SendFailed(Exception):
    """The destination could not be reached, refused the association or an object."""

    message: str

    def __str__(self) -> str:
        """Returns the message."""
        return self.message


def read_objects(blobs: Sequence[bytes]) -> list[Dataset]:
    """Returns the Part-10 files as datasets, skipping empty ones (no KOS: nothing flagged)."""
    return [dcmread(io.BytesIO(blob)) for blob in blobs if blob]


def send_objects(
    datasets: Sequence[Dataset],
    destination: Peer,
    *,
    ae_title: str,
    timeout_s: float = 30.0,
) -> list[str]:
    """C-STOREs datasets to destination in one association; returns their SOPInstanceUIDs.

    Raises SendFailed naming the step that failed; nothing in it comes from the datasets
    but SOP class and instance UIDs.
    """
    ae = AE(ae_title=ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    for sop_class in dict.fromkeys(str(ds.SOPClassUID) for ds in datasets):
        syntaxes = {
            str(ds.file_meta.TransferSyntaxUID)
            for ds in datasets
            if str(ds.SOPClassUID) == sop_class
        }
        ae.add_requested_context(
            sop_class, [*sorted(syntaxes), ExplicitVRLittleEndian, ImplicitVRLittleEndian]
        )
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    if not assoc.is_established:
        raise SendFailed(f"no association with {destination} (refused, aborted or unreachable)")
    sent: list[str] = []
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            code = int(getattr(status, "Status", -1)) if status else -1
            if code not in STORED_STATUSES:
                shown = f"0x{code:04X}" if code >= 0 else "no answer"
                raise SendFailed(f"{destination} did not store {ds.SOPInstanceUID}: {shown}")
            sent.append(str(ds.SOPInstanceUID))
    finally:
        if assoc.is_established:
            assoc.release()
    return sent
