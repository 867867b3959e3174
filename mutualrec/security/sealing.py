"""Envelope encryption of kept originals (FHIR documents hold residents' ID numbers).

Each object gets its own random data key (AES-256-GCM); the data key is wrapped by the
deployment's document key (AES-256-GCM too), whose id is written in the object's header, so a
deployment can roll to a new key and still read what older keys sealed. Pure: bytes in, bytes out.

Layout of a sealed object::

    b"MRS1" | len(key id) (1 byte) | key id (ASCII) | wrap nonce (12) | wrapped data key (48)
           | data nonce (12) | ciphertext and tag

The wrapped key is bound to the magic and key id, the ciphertext to the whole header (AAD): an
object cannot be re-labelled with another key id, nor its data key swapped, without failing.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"MRS1"
KEY_BYTES = 32
_NONCE = 12
_WRAPPED = KEY_BYTES + 16


class SealError(ValueError):
    """A sealed object cannot be opened: unknown key id, damaged or tampered with."""


def key_id(key: bytes) -> str:
    """The public id of a document key: a hash of it, never the key."""
    return hashlib.sha256(b"mutualrec document key id\x00" + key).hexdigest()[:16]


@dataclass(frozen=True)
class Keyring:
    """The key that seals new objects and every key that may open old ones."""

    current: bytes
    older: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        for key in (self.current, *self.older):
            if len(key) != KEY_BYTES:
                raise ValueError(f"a document key is {KEY_BYTES} bytes")

    @classmethod
    def of(cls, current: bytes, older: Sequence[bytes] = ()) -> Keyring:
        """A keyring sealing with ``current`` and opening with any of them."""
        return cls(current, tuple(older))

    def key(self, wanted: str) -> bytes | None:
        """The key whose id is ``wanted``, if this keyring holds it."""
        return next((k for k in (self.current, *self.older) if key_id(k) == wanted), None)


def is_sealed(blob: bytes) -> bool:
    """Whether ``blob`` was written by :func:`seal` (documents kept before sealing was
    introduced are plain JSON, which never starts with the magic)."""
    return blob.startswith(MAGIC)


def seal(keyring: Keyring, plaintext: bytes) -> bytes:
    """``plaintext`` encrypted under a fresh data key wrapped by the current document key."""
    kid = key_id(keyring.current).encode("ascii")
    data_key = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
    wrap_nonce = os.urandom(_NONCE)
    wrapped = AESGCM(keyring.current).encrypt(wrap_nonce, data_key, MAGIC + kid)
    data_nonce = os.urandom(_NONCE)
    header = MAGIC + bytes([len(kid)]) + kid + wrap_nonce + wrapped + data_nonce
    return header + AESGCM(data_key).encrypt(data_nonce, plaintext, header)


def unseal(keyring: Keyring, blob: bytes) -> bytes:
    """The plaintext of a sealed object; raises :class:`SealError`."""
    if not is_sealed(blob) or len(blob) < len(MAGIC) + 1:
        raise SealError("not a sealed object")
    kid_len = blob[len(MAGIC)]
    start = len(MAGIC) + 1
    kid = blob[start : start + kid_len]
    cursor = start + kid_len
    wrap_nonce = blob[cursor : cursor + _NONCE]
    wrapped = blob[cursor + _NONCE : cursor + _NONCE + _WRAPPED]
    data_nonce_at = cursor + _NONCE + _WRAPPED
    data_nonce = blob[data_nonce_at : data_nonce_at + _NONCE]
    header = blob[: data_nonce_at + _NONCE]
    if len(data_nonce) != _NONCE:
        raise SealError("the sealed object is truncated")
    key = keyring.key(kid.decode("ascii", "replace"))
    if key is None:
        raise SealError(f"sealed with document key {kid.decode('ascii', 'replace')}, not held")
    try:
        data_key = AESGCM(key).decrypt(wrap_nonce, wrapped, MAGIC + kid)
        return AESGCM(data_key).decrypt(data_nonce, blob[len(header) :], header)
    except InvalidTag:
        raise SealError("the sealed object is damaged or was tampered with") from None
