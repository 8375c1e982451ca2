"""The C-STORE SCP: checks each instance, spools it per association, commits on A-RELEASE."""

from __future__ import annotations

import logging
import re
import shutil
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.events import Event
from pynetdicom.transport import ThreadedAssociationServer

from dicom_receiver.contexts import supported_contexts
from dicom_receiver.settings import ReceiverSettings
from dicom_receiver.spool import Spool, StudyTooLarge, one_way_key

LOG = logging.getLogger("dicom_receiver.scp")

# C-STORE statuses (PS3.4 Annex B.2.3).
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DATA_SET_DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
# A UID as it is found in the wild: digits and dots, at most 64 characters. Leading zeros,
# which PS3.5 forbids but some scanners write, are let through: the UID is only hashed.
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
_UID_MAX = 64
UID_TAGS = (
    ("StudyInstanceUID", 0x0020000D),
    ("SeriesInstanceUID", 0x0020000E),
    ("SOPInstanceUID", 0x00080018),
)


@dataclass
class AssociationState:
    """What the receiver counts of one open association, to enforce its limits."""

    id: str
    peer: str  # "CALLING_AE@address", never patient data
    received_bytes: int = 0
    bytes_since_store: int = 0
    instances: int = 0
    refused: bool = False
    studies: set[str] = field(default_factory=set)  # keys of the studies it sent


@dataclass(frozen=True)
class Refusal:
    """Why an instance is refused: the C-STORE status and a reason free of patient data."""

    status: int
    reason: str
    abort: bool = False


def _affected_sop_instance(event: Event) -> str:
    """Returns the C-STORE request's Affected SOP Instance UID ("" when absent)."""
    return str(getattr(event.request, "AffectedSOPInstanceUID", "") or "")


def _peer(assoc: Association) -> str:
    requestor = assoc.requestor
    return f"{requestor.ae_title or '?'}@{requestor.address}"


def valid_uid(value: object) -> bool:
    """Tells whether value is a usable DICOM UID (digits and dots, at most 64 characters)."""
    return isinstance(value, str) and len(value) <= _UID_MAX and bool(_UID.fullmatch(value))


def read_uids(dataset: Dataset) -> tuple[str, str, str] | Refusal:
    """Returns (StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID), or why it cannot.

    Only attribute names go into the reason, never values: a broken header may hold
    anything, a patient's name included.
    """
    found: list[str] = []
    for keyword, tag in UID_TAGS:
        try:
            # The raw element, not dataset.get(): pydicom's conversion warns about a bad
            # value by quoting it, and a warning is a log line.
            element = dataset.get_item(tag)
        except Exception:  # pydicom parses lazily: a hostile element fails here, of any type
            return Refusal(CANNOT_UNDERSTAND, f"{keyword} cannot be read")
        value = None if element is None else element.value
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        text = "" if value is None else str(value).strip(" \x00")
        if not text:
            return Refusal(CANNOT_UNDERSTAND, f"no {keyword}")
        if not valid_uid(text):
            return Refusal(CANNOT_UNDERSTAND, f"{keyword} is not a valid UID")
        found.append(text)
    return found[0], found[1], found[2]


def check_limits(
    state: AssociationState,
    size: int,
    settings: ReceiverSettings,
    free_bytes: int,
) -> Refusal | None:
    """Returns why one more instance of size bytes would pass a limit, None when it fits.

    Pure: the association's counts, the limits and the free disk space are its inputs.
    Passing a per-association limit aborts the association, so that a sender cannot fill
    the disk one refused instance at a time.
    """
    if state.instances + 1 > settings.max_association_instances:
        return Refusal(
            OUT_OF_RESOURCES,
            f"more than {settings.max_association_instances} instances in one association",
            abort=True,
        )
    if state.received_bytes > settings.max_association_bytes:
        return Refusal(
            OUT_OF_RESOURCES,
            f"more than {settings.max_association_bytes} bytes in one association",
            abort=True,
        )
    if free_bytes - size < settings.min_free_bytes:
        return Refusal(
            OUT_OF_RESOURCES,
            f"less than {settings.min_free_bytes} bytes would be left free on the spool's disk",
            abort=True,
        )
    return None


class StoreSCP:
    """The pynetdicom server and its event handlers; `on_released` runs after each commit."""

    def __init__(
        self,
        settings: ReceiverSettings,
        spool: Spool,
        *,
        on_released: Callable[[], None] | None = None,
    ) -> None:
        self._settings = settings
        self._spool = spool
        self._on_released = on_released
        self._lock = threading.Lock()
        # Keyed by the association itself, not id(): an id can be reused once it is freed.
        self._associations: dict[Association, AssociationState] = {}
        self._server: ThreadedAssociationServer | None = None

    @property
    def port(self) -> int:
        """Returns the port the server listens on (the chosen one when DICOM_PORT is 0)."""
        if self._server is None:
            raise RuntimeError("the SCP is not started")
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Starts listening on DICOM_BIND_ADDRESS:DICOM_PORT in background threads."""
        settings = self._settings
        ae = AE(ae_title=settings.ae_title)
        ae.supported_contexts = supported_contexts()
        ae.maximum_associations = settings.max_associations
        ae.network_timeout = settings.network_timeout_s
        # Refuse associations addressed to another AE title: a misrouted sender learns at once.
        ae.require_called_aet = True
        handlers: list[Any] = [
            (evt.EVT_CONN_OPEN, self._on_open),
            (evt.EVT_DATA_RECV, self._on_data),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_RELEASED, self._on_release),
            (evt.EVT_ABORTED, self._on_abort),
            (evt.EVT_CONN_CLOSE, self._on_close),
        ]
        self._server = ae.start_server(
            (settings.bind_address, settings.port), block=False, evt_handlers=handlers
        )
        LOG.info(
            "DICOM receiver %s listening on %s:%d (%d presentation contexts)",
            settings.ae_title,
            settings.bind_address,
            self.port,
            len(ae.supported_contexts),
        )

    def stop(self) -> None:
        """Stops listening and aborts open associations (their instances are discarded)."""
        if self._server is not None:
            # pynetdicom's shutdown() only closes the listening socket; the open
            # associations are aborted here, so none commits during the stop.
            for assoc in list(self._server.active_associations):
                assoc.abort()
            self._server.shutdown()
            self._server = None

    # --- handlers: each runs in the association's own thread ----------------------

    def _state(self, assoc: Association) -> AssociationState:
        with self._lock:
            state = self._associations.get(assoc)
            if state is None:
                state = AssociationState(uuid.uuid4().hex[:12], _peer(assoc))
                self._associations[assoc] = state
            elif state.peer.startswith("?@"):
                # The connection opens before the A-ASSOCIATE-RQ names the calling AE.
                state.peer = _peer(assoc)
            return state

    def _pop_state(self, assoc: Association) -> AssociationState | None:
        with self._lock:
            return self._associations.pop(assoc, None)

    def _on_open(self, event: Event) -> None:
        self._state(event.assoc)

    def _on_data(self, event: Event) -> None:
        # Counted as bytes arrive, before pynetdicom assembles a data set in memory, so a
        # sender cannot make the receiver hold an endless instance or association.
        state = self._state(event.assoc)
        size = len(event.data)
        state.received_bytes += size
        state.bytes_since_store += size
        settings = self._settings
        too_much = (
            state.bytes_since_store > settings.max_instance_bytes
            or state.received_bytes > settings.max_association_bytes + settings.max_instance_bytes
        )
        if too_much and not state.refused:
            state.refused = True
            LOG.warning(
                "association %s (%s) aborted: more than %d bytes in one instance or %d in "
                "the association",
                state.id,
                state.peer,
                settings.max_instance_bytes,
                settings.max_association_bytes,
            )
            event.assoc.abort(block=False)

    def _on_echo(self, event: Event) -> int:
        LOG.debug("C-ECHO from %s", self._state(event.assoc).peer)
        return SUCCESS

    def _on_store(self, event: Event) -> int:
        state = self._state(event.assoc)
        state.bytes_since_store = 0
        refusal = self._refusal(event, state)
        if isinstance(refusal, Refusal):
            return self._refuse(event, state, refusal)
        study_uid, data = refusal
        try:
            key = self._spool.store(
                state.id,
                study_uid,
                _affected_sop_instance(event),
                data,
                max_study_bytes=self._settings.max_study_bytes,
            )
        except StudyTooLarge:
            return self._refuse(
                event,
                state,
                Refusal(
                    OUT_OF_RESOURCES,
                    f"study {one_way_key(study_uid)} would pass "
                    f"{self._settings.max_study_bytes} bytes",
                    abort=True,
                ),
            )
        except OSError as exc:
            # A full or failing disk: refuse the instance, keep serving.
            return self._refuse(
                event, state, Refusal(OUT_OF_RESOURCES, f"spool write failed ({exc.strerror})")
            )
        state.instances += 1
        if key not in state.studies:
            state.studies.add(key)
            LOG.info("association %s (%s): receiving study %s", state.id, state.peer, key)
        return SUCCESS

    def _refusal(self, event: Event, state: AssociationState) -> Refusal | tuple[str, bytes]:
        """Returns the study and the Part-10 bytes of a storable instance, or why it is not."""
        if state.refused:
            return Refusal(OUT_OF_RESOURCES, "the association passed a limit")
        try:
            dataset = event.dataset
        except Exception:  # whatever the peer sent as a data set: any decoding error
            return Refusal(CANNOT_UNDERSTAND, "not a readable DICOM data set")
        uids = read_uids(dataset)
        if isinstance(uids, Refusal):
            return uids
        study_uid, _series_uid, sop_uid = uids
        if sop_uid != _affected_sop_instance(event):
            return Refusal(DATA_SET_DOES_NOT_MATCH, "SOPInstanceUID differs from the request's")
        data = event.encoded_dataset(include_meta=True)
        free = shutil.disk_usage(self._spool.root).free
        limit = check_limits(state, len(data), self._settings, free)
        return limit if limit is not None else (study_uid, data)

    def _refuse(self, event: Event, state: AssociationState, refusal: Refusal) -> int:
        LOG.warning(
            "association %s (%s): instance refused with status 0x%04X: %s%s",
            state.id,
            state.peer,
            refusal.status,
            refusal.reason,
            "; aborting the association" if refusal.abort else "",
        )
        if refusal.abort and not state.refused:
            state.refused = True
            event.assoc.abort(block=False)
        return refusal.status

    def _on_release(self, event: Event) -> None:
        state = self._pop_state(event.assoc)
        if state is None:
            return
        committed = self._spool.release(state.id)
        for key, files in committed:
            LOG.info(
                "association %s (%s) released: %d instance(s) of study %s kept",
                state.id,
                state.peer,
                files,
                key,
            )
        if committed and self._on_released is not None:
            self._on_released()

    def _on_abort(self, event: Event) -> None:
        state = self._state(event.assoc)
        state.refused = True
        LOG.info("association %s (%s) aborted", state.id, state.peer)

    def _on_close(self, event: Event) -> None:
        # Released associations were committed and forgotten: what is left was not released.
        state = self._pop_state(event.assoc)
        if state is None:
            return
        for key, files in self._spool.discard(state.id):
            LOG.warning(
                "association %s (%s) ended without A-RELEASE: %d instance(s) of study %s discarded",
                state.id,
                state.peer,
                files,
                key,
            )
