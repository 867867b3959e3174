"""How a client command reaches the server: the channel (TLS, mTLS or plaintext), the
credential it presents, and its --json output. Each option falls back to the environment
(:class:`mutualrec.config.ClientSettings`, read once per command)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from mutualrec.config import ClientSettings, ConfigError


def settings(args: argparse.Namespace) -> ClientSettings:
    """The environment's client settings, as the parser read them."""
    client: ClientSettings = args.client
    return client


def api_key(args: argparse.Namespace) -> str:
    """The API key to send; "" when a client certificate names the hospital instead."""
    key = args.key or settings(args).api_key
    if not key and not client_cert(args):
        raise ConfigError(
            "give the institution's API key with --key or MUTUALREC_API_KEY, "
            "or its client certificate with --cert and --cert-key"
        )
    return str(key)


def client_cert(args: argparse.Namespace) -> tuple[str, str] | None:
    """The hospital's client certificate and key files, for mTLS; None without them."""
    cert = getattr(args, "cert", None) or settings(args).client_cert
    key = getattr(args, "cert_key", None) or settings(args).client_key
    if bool(cert) != bool(key):
        raise ConfigError("--cert and --cert-key (MUTUALREC_CLIENT_CERT, _KEY) go together")
    return (cert, key) if cert else None


def token(args: argparse.Namespace) -> str:
    """The credential of a patient's (or a share link's) command, in any form the CLI prints;
    for `download` also a hospital's API key (opening a study its check recognized)."""
    from mutualrec.client.links import credential

    hospital_key = getattr(args, "key", None)
    presented = args.token or hospital_key or settings(args).token
    if not presented and hasattr(args, "key"):
        presented = settings(args).api_key
    if not presented:
        raise ConfigError("give a patient token or share token with --token or MUTUALREC_TOKEN")
    return credential(str(presented))


def channel(args: argparse.Namespace, options: list[tuple[str, Any]] | None = None) -> grpc.Channel:
    """A channel to ``--server``: TLS when given the server's CA (``--ca``), with the
    hospital's client certificate when given one (mTLS), plaintext otherwise."""
    ca = getattr(args, "ca", None) or settings(args).server_ca
    pair = client_cert(args)
    if not ca:
        if pair:
            raise ConfigError("a client certificate needs TLS: give the server's CA with --ca")
        return grpc.insecure_channel(args.server, options=options)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=Path(ca).read_bytes(),
        private_key=Path(pair[1]).read_bytes() if pair else None,
        certificate_chain=Path(pair[0]).read_bytes() if pair else None,
    )
    return grpc.secure_channel(args.server, credentials, options=options)


def large_messages() -> list[tuple[str, int]]:
    """Channel options lifting the client's message size limits."""
    # The server sets the real limit (MUTUALREC_MAX_FHIR_MIB) and answers precisely beyond it.
    return [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


def print_message(message: Message) -> None:
    """A reply as indented JSON with the proto's field names (the --json output)."""
    print(
        json.dumps(
            MessageToDict(message, preserving_proto_field_name=True), indent=2, ensure_ascii=False
        )
    )
