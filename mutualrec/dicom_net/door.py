"""The DICOM listener: a pynetdicom application entity that accepts associations from registered
hospital PACS, answers C-ECHO, and hands each C-STORE to the storage service.

pynetdicom runs every association on a thread of its own and calls the handlers there, one
request at a time; the storage service waits on the server's bounded worker threads, so many
associations share the same pools as UploadStudy.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from mutualrec.config import TlsFiles
from mutualrec.dicom_net.reactor import wait_for_events
from mutualrec.dicom_net.statuses import OUT_OF_RESOURCES, REFUSED, StoreStatus, status_of
from mutualrec.runtime import Runtime
from mutualrec.security.access import HOSPITAL
from mutualrec.security.audit import CallRecord, events_of, open_call
from mutualrec.services.dicom_store import DicomAssociation
from mutualrec.violations import Unavailable

LOG = logging.getLogger("mutualrec.dicom")
# A-ASSOCIATE-RJ (PS3.8 9.3.4): result, source, reason.
REJECTED_PERMANENT = 0x01
REJECTED_TRANSIENT = 0x02
SERVICE_USER = 0x01
NO_REASON = 0x01
CALLING_AE_NOT_RECOGNIZED = 0x03
CALLED_AE_NOT_RECOGNIZED = 0x07
# The name the audit trail gives what a C-STORE association did.
AUDIT_NAME = "DICOM/C-STORE"
# pynetdicom's listener runs each TLS handshake on its accepting thread: a client that connects
# and says nothing holds every other connection back for at most this long.
HANDSHAKE_SECONDS = 10.0
MAX_PDU_BYTES = 1024 * 1024


class _BoundedHandshakes(ssl.SSLContext):
    """A server context whose handshakes end within :data:`HANDSHAKE_SECONDS`; the socket is
    blocking again afterwards, as pynetdicom expects an accepted socket to be."""

    def wrap_socket(self, sock: socket.socket, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        sock.settimeout(HANDSHAKE_SECONDS)
        wrapped = super().wrap_socket(sock, *args, **kwargs)
        wrapped.settimeout(None)
        return wrapped


def tls_context(tls: TlsFiles) -> ssl.SSLContext:
    """DICOM over TLS (PS3.15 B.1) with gRPC's certificate and key; with a client CA, a client
    certificate it signed is required, as gRPC requires one."""
    context = _BoundedHandshakes(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.cert, tls.key)
    if tls.client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=str(tls.client_ca))
    return context


def certified_institution(assoc: Association) -> str | None:
    """The institution code (subject CN) of the client certificate the association's TLS
    verified; None without TLS or a certificate."""
    sock = assoc.dul.socket.socket if assoc.dul.socket is not None else None
    if not isinstance(sock, ssl.SSLSocket):
        return None
    certificate = sock.getpeercert()
    subject: Any = (certificate or {}).get("subject", ())
    for rdn in subject:
        for name, value in rdn:
            if name == "commonName":
                return str(value)
    return None


@dataclass
class _Accepted:
    """An accepted association's storage side and its audit record."""

    storage: DicomAssociation
    record: CallRecord


class DicomDoor:
    """The listener of one server process; :meth:`start` it, :meth:`stop` it."""

    def __init__(self, runtime: Runtime) -> None:
        settings = runtime.settings
        assert settings.dicom_listen is not None
        self._runtime = runtime
        self._address = settings.dicom_listen
        self._ae = AE(ae_title=settings.dicom_ae_title)
        # Checked in _on_requested too, with the other refusals; this keeps pynetdicom's own
        # check consistent with ours.
        self._ae.require_called_aet = True
        # The largest P-DATA PDU a PACS may send us. pynetdicom's 16 KiB default cuts a 0.5 MB
        # CT instance into 32 PDUs, each a turn of its (pure Python) receive loop and state
        # machine; the instance is held whole in memory while it arrives anyway.
        self._ae.maximum_pdu_size = MAX_PDU_BYTES
        self._ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
        # Every storage SOP class pynetdicom knows, in every transfer syntax: the ingest reads
        # any syntax's header (deflated included) and refuses by content, never by SOP class.
        for context in AllStoragePresentationContexts:
            assert context.abstract_syntax is not None
            self._ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        # By association (a thread object, hashed by identity) until its connection closes.
        self._accepted: dict[Association, _Accepted] = {}
        self._lock = threading.Lock()
        self._server: ThreadedAssociationServer | None = None

    @property
    def port(self) -> int:
        """The port listened on (the one picked when the setting said 0)."""
        assert self._server is not None
        return int(self._server.server_address[1])

    def start(self) -> int:
        """Listen in the background; the port."""
        handlers: list[Any] = [
            (evt.EVT_CONN_OPEN, self._on_opened),
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_CONN_CLOSE, self._on_closed),
        ]
        tls = self._runtime.settings.tls
        self._server = self._ae.start_server(
            self._address,
            block=False,
            evt_handlers=handlers,
            ssl_context=tls_context(tls) if tls is not None else None,
        )
        return self.port

    def stop(self, grace_seconds: float) -> None:
        """Stop accepting associations; give those in progress ``grace_seconds`` to end, then
        abort them (what they had stored is kept: every answered instance is durable)."""
        if self._server is not None:
            self._server.shutdown()
        deadline = time.monotonic() + grace_seconds
        while self._ae.active_associations and time.monotonic() < deadline:
            time.sleep(0.05)
        self._ae.shutdown()

    def _on_opened(self, event: evt.Event) -> None:
        """A PACS sends an instance and waits for its response: Nagle's algorithm must not hold
        that small response back (dcmtk, Orthanc's toolkit, sets TCP_NODELAY; pynetdicom does
        not). pynetdicom's reactor loops would poll the connection at 1 kHz: see
        :mod:`mutualrec.dicom_net.reactor`."""
        wrapped = event.assoc.dul.socket
        raw = wrapped.socket if wrapped is not None else None
        if raw is not None:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Before the association's threads start: they wait for events instead of polling.
        wait_for_events(event.assoc)

    def _on_requested(self, event: evt.Event) -> None:
        """Accept only a registered calling AE title (from its address, if one is registered)
        calling our AE title; reject the rest with the reason DICOM defines."""
        assoc = event.assoc
        request = assoc.requestor.primitive
        assert request is not None  # EVT_REQUESTED follows the A-ASSOCIATE-RQ
        calling = str(request.calling_ae_title).strip()
        called = str(request.called_ae_title).strip()
        address = assoc.requestor.address
        if called != self._runtime.settings.dicom_ae_title:
            LOG.info("association from %s refused: called AE title %r", address, called)
            _reject(assoc, REJECTED_PERMANENT, CALLED_AE_NOT_RECOGNIZED)
            return
        try:
            caller = self._runtime.dicom_peers.caller(calling, address)
        except Exception:
            LOG.exception("association from %s refused: the index cannot be read", address)
            _reject(assoc, REJECTED_TRANSIENT, NO_REASON)
            return
        if caller is None:
            LOG.info("association from %s refused: calling AE title %r", address, calling)
            _reject(assoc, REJECTED_PERMANENT, CALLING_AE_NOT_RECOGNIZED)
            return
        certified = certified_institution(assoc)
        if certified is not None and certified != caller.institution_code:
            # As over gRPC: a hospital's certificate carries no other institution's calls.
            LOG.info(
                "association from %s refused: AE title %r is %s's, the certificate %s's",
                address,
                calling,
                caller.institution_code,
                certified,
            )
            _reject(assoc, REJECTED_PERMANENT, CALLING_AE_NOT_RECOGNIZED)
            return
        # This thread serves the association: the audit record lives in its context.
        record = open_call(AUDIT_NAME)
        record.role = HOSPITAL
        record.credential = f"ae:{caller.ae_title}"
        record.institution_id = caller.institution_id
        record.peer = f"{address}:{assoc.requestor.port}"
        record.attached = True
        with self._lock:
            self._accepted[assoc] = _Accepted(self._runtime.dicom_storage.open(caller), record)

    def _on_echo(self, _event: evt.Event) -> int:
        return 0x0000

    def _on_store(self, event: evt.Event) -> Dataset:
        with self._lock:
            accepted = self._accepted.get(event.assoc)
        request = event.request
        source = str(getattr(request, "AffectedSOPInstanceUID", "") or "")
        if accepted is None:
            return _status(StoreStatus(REFUSED, "association not accepted"))
        try:
            stored = accepted.storage.store(event.encoded_dataset(include_meta=True), source)
        except Unavailable as outage:
            LOG.warning("C-STORE of %s: %s", source, outage)
            return _status(StoreStatus(OUT_OF_RESOURCES, "storage unavailable: send again later"))
        except Exception:
            # The server goes on; the PACS keeps the instance and may send it again.
            LOG.exception("C-STORE of %s failed", source)
            return _status(StoreStatus(OUT_OF_RESOURCES, "the instance was not stored: retry"))
        outcome = stored.outcome
        if outcome.reason:
            LOG.info("C-STORE of %s refused: %s %s", source, outcome.reason, outcome.violations)
        return _status(status_of(outcome, held_unlinked=stored.held_unlinked))

    def _on_closed(self, event: evt.Event) -> None:
        with self._lock:
            accepted = self._accepted.pop(event.assoc, None)
        if accepted is not None and accepted.record.patients:
            events = events_of(accepted.record, "OK", dt.datetime.now(dt.UTC))
            self._runtime.audit.submit(events)


def _reject(assoc: Any, result: int, reason: int) -> None:
    """Send an A-ASSOCIATE-RJ from the service user, as pynetdicom's own checks do: then wait
    (kill) until the peer has read it and closed, or the reactor would close the socket first
    and the peer see an abort instead of the reason."""
    assoc.acse.send_reject(result, SERVICE_USER, reason)
    evt.trigger(assoc, evt.EVT_REJECTED, {})
    assoc.kill()


def _status(status: StoreStatus) -> Dataset:
    dataset = Dataset()
    dataset.Status = status.code
    if status.comment:
        dataset.ErrorComment = status.comment
    if status.offending_tag is not None:
        dataset.OffendingElement = [status.offending_tag]
    return dataset


def listening_door(runtime: Runtime) -> DicomDoor | None:
    """The started DICOM door when the settings ask for one (``MUTUALREC_DICOM_LISTEN``)."""
    if runtime.settings.dicom_listen is None:
        return None
    door = DicomDoor(runtime)
    door.start()
    return door
