#!/usr/bin/env python3
"""A DICOM C-STORE SCP that only keeps each instance as a file: the floor of a pynetdicom door.

It accepts every storage SOP class in every transfer syntax from any calling AE title, as
mutualrec's DICOM door does, with the same 1 MiB maximum PDU and TCP_NODELAY on each accepted
socket, and for each C-STORE does what any durable store must and nothing more: SHA-256 of the
encoded instance (with its file meta), a temporary file, fsync (unless ``--no-fsync``), a rename
into place, then the Success response. No header walk, no validation, no index. That is the
floor under any CPython C-STORE door built on pynetdicom, as Orthanc with ``SyncStorageArea``.

``--waiting-reactors`` also applies mutualrec's patch that makes pynetdicom's loops wait for
events instead of polling (:mod:`mutualrec.dicom_net.reactor`), as ``mutualrec serve`` does.

    PYTHONPATH=. .venv/bin/python bench/null_cstore_server.py --store DIR [--listen 127.0.0.1:0]
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any

# Run as a script, this file's directory is on sys.path: the gRPC floor's file keeper.
from null_ingest_server import FileKeeper
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from mutualrec.dicom_net.door import MAX_PDU_BYTES
from mutualrec.dicom_net.reactor import wait_for_events

SUCCESS = 0x0000


def main() -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--ae-title", default="MUTUALREC")
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--no-fsync", dest="fsync", action="store_false")
    parser.add_argument("--waiting-reactors", action="store_true")
    args = parser.parse_args()
    keeper = FileKeeper(args.store, args.fsync)

    def on_opened(event: Any) -> None:
        wrapped = event.assoc.dul.socket
        raw = wrapped.socket if wrapped is not None else None
        if raw is not None:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if args.waiting_reactors:
            wait_for_events(event.assoc)

    def on_store(event: Any) -> int:
        keeper.write([event.encoded_dataset(include_meta=True)])
        return SUCCESS

    ae = AE(ae_title=args.ae_title)
    ae.maximum_pdu_size = MAX_PDU_BYTES
    ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
    for context in AllStoragePresentationContexts:
        assert context.abstract_syntax is not None
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    host, port = args.listen.rsplit(":", 1)
    server = ae.start_server(
        (host, int(port)),
        block=False,
        evt_handlers=[(evt.EVT_CONN_OPEN, on_opened), (evt.EVT_C_STORE, on_store)],
    )
    assert server is not None
    print(f"null cstore listening on {host}:{server.server_address[1]}", flush=True)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    server.shutdown()
    ae.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
