"""What every audience's commands share on the command line: a documented (sub)command, the
server address, credentials and TLS options, identity document types."""

from __future__ import annotations

import argparse
from typing import Any

from mutualrec.cli.help import document
from mutualrec.config import DEFAULT_ADDRESS, ClientSettings

SERVER_HELP = f"HOST:PORT of the server (default: MUTUALREC_SERVER, else {DEFAULT_ADDRESS})"
ID_TYPES = [
    "RESIDENT_ID_CARD",
    "PASSPORT",
    "E_HEALTH_CARD",
    "MAINLAND_TRAVEL_PERMIT",
    "FOREIGN_PERMANENT_RESIDENT_ID",
]


def server_address(text: str) -> str:
    """``--server``: host:port. Without a port gRPC would quietly dial 443, so it is an error."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or host.endswith(":") or not port.isdigit():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:50051, [::1]:50051)"
        )
    if not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"port {port} of {text!r} is not 1 to 65535")
    return text.strip()


def sub(group: Any, name: str, help: str) -> argparse.ArgumentParser:
    """A (sub)command with its one-line description and an example in its --help."""
    parser: argparse.ArgumentParser = group.add_parser(name, help=help)
    document(parser, name, help)
    return parser


def server_option(parser: argparse.ArgumentParser, client: ClientSettings) -> None:
    """``--server``, defaulting to the environment's."""
    parser.add_argument("--server", type=server_address, default=client.server, help=SERVER_HELP)


def tls_options(parser: argparse.ArgumentParser) -> None:
    """``--ca``: connect with TLS."""
    parser.add_argument(
        "--ca", help="the server's CA, PEM: connect with TLS (default: MUTUALREC_SERVER_CA)"
    )


def client_options(parser: argparse.ArgumentParser, client: ClientSettings) -> None:
    """The server and the credentials of a command run with an API key (or mTLS)."""
    server_option(parser, client)
    parser.add_argument("--key", help="API key (default: MUTUALREC_API_KEY)")
    tls_options(parser)
    parser.add_argument(
        "--cert",
        help="the hospital's client certificate, PEM, for mTLS (MUTUALREC_CLIENT_CERT)",
    )
    parser.add_argument("--cert-key", help="its private key, PEM (MUTUALREC_CLIENT_KEY)")


def token_options(
    parser: argparse.ArgumentParser, client: ClientSettings, holder: str = "patient token"
) -> None:
    """The server and the token of a command run by a patient (or a share link's holder)."""
    server_option(parser, client)
    parser.add_argument(
        "--token",
        help=f"{holder}, or the link `share` printed (default: MUTUALREC_TOKEN)",
    )
    tls_options(parser)


def identity_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """A patient's identity document: number, type and (passports) issuing country."""
    parser.add_argument("--patient-id", required=required, help="identity document number")
    parser.add_argument("--id-type", default="RESIDENT_ID_CARD", choices=ID_TYPES)
    parser.add_argument("--country", default="", help="issuing country (ISO alpha-3), passports")
