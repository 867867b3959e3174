"""Envelope encryption of kept originals: round trip, rotation, tampering."""

from __future__ import annotations

import pytest

from mutualrec.security.sealing import Keyring, SealError, is_sealed, key_id, seal, unseal

OLD = bytes(range(32))
NEW = bytes(range(32, 64))
DOCUMENT = b'{"resourceType":"Bundle","identifier":"50010319680315109X"}'


def test_a_sealed_document_holds_no_plaintext_and_opens_to_the_same_bytes() -> None:
    keyring = Keyring.of(NEW)
    blob = seal(keyring, DOCUMENT)

    assert is_sealed(blob)
    assert b"50010319680315109X" not in blob
    assert key_id(NEW).encode() in blob
    assert unseal(keyring, blob) == DOCUMENT
    # A fresh data key and nonce every time: equal documents do not look equal at rest.
    assert seal(keyring, DOCUMENT) != blob


def test_a_rolled_key_still_opens_what_the_retired_key_sealed() -> None:
    sealed_before = seal(Keyring.of(OLD), DOCUMENT)

    assert unseal(Keyring.of(NEW, [OLD]), sealed_before) == DOCUMENT
    with pytest.raises(SealError, match="not held"):
        unseal(Keyring.of(NEW), sealed_before)


def test_any_flipped_byte_is_refused() -> None:
    keyring = Keyring.of(NEW)
    blob = bytearray(seal(keyring, DOCUMENT))
    for position in (5, 30, 60, len(blob) - 1):
        damaged = bytearray(blob)
        damaged[position] ^= 0x01
        with pytest.raises(SealError):
            unseal(keyring, bytes(damaged))
