"""The audit trail's domain: what one call did to which patients, and how entries are chained.

A call's record is opened by the server interceptor (which knows the method), filled by the
authentication step (who) and by the servicer (which patients, what was returned), and closed
when the call ends (with its status). Only calls that touched a patient's data leave entries.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from contextvars import ContextVar
from dataclasses import dataclass, field

# The hash a chain starts from.
GENESIS = "0" * 64
# Longest description of what a call returned, in characters.
WHAT_MAX = 300
# Leads the entries of a call the browser made ahead of its user (a prerendered viewer, a
# prefetch): the patient's list of accesses tells those reads from the ones they asked for.
AHEAD = "(fetched ahead by the browser, not yet opened) "


@dataclass
class CallRecord:
    """What one call has done so far, as the audit trail will tell it."""

    rpc: str
    role: str = ""
    credential: str = ""
    institution_id: int | None = None
    peer: str = ""
    # patient_key -> what the call read or wrote of that patient's data.
    patients: dict[str, str] = field(default_factory=dict)
    attached: bool = False
    # Made by the browser ahead of its user (Sec-Purpose: prefetch), not at their request.
    ahead: bool = False


_CURRENT: ContextVar[CallRecord | None] = ContextVar("mutualrec_audit_call", default=None)


def open_call(rpc: str) -> CallRecord:
    """Start the record of the call running in this context."""
    record = CallRecord(rpc)
    _CURRENT.set(record)
    return record


def current_call() -> CallRecord | None:
    """The record of the call running in this context, if the server opened one."""
    return _CURRENT.get()


def touched(patient_key: str, what: str) -> None:
    """Say that the current call read or wrote ``patient_key``'s data, and what of it."""
    record = _CURRENT.get()
    if record is None:
        return
    previous = record.patients.get(patient_key)
    record.patients[patient_key] = (what if previous is None else f"{previous}; {what}")[:WHAT_MAX]


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One entry to append: one call's access to one patient's data."""

    at: dt.datetime
    role: str
    credential: str
    institution_id: int | None
    patient_key: str
    rpc: str
    what: str
    outcome: str
    peer: str


def storable(text: str, limit: int) -> str:
    """``text`` as every index can keep it, in at most ``limit`` characters: a NUL (which
    PostgreSQL refuses in text) and lone surrogates (which UTF-8 cannot encode) are written as
    backslash escapes. What a caller sent must never be able to stop its own call's entry, or
    the entries written with it, from being written."""
    if text.isascii() and "\x00" not in text:
        return text[:limit]
    escaped = text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    return escaped[:limit]


def events_of(record: CallRecord, outcome: str, at: dt.datetime) -> list[AuditEvent]:
    """The entries a finished call leaves: one per patient it touched."""
    return [
        AuditEvent(
            at=at,
            role=storable(record.role, 16),
            credential=storable(record.credential, 40),
            institution_id=record.institution_id,
            patient_key=storable(patient_key, 64),
            rpc=storable(record.rpc, 64),
            what=storable(AHEAD + what if record.ahead else what, WHAT_MAX),
            outcome=storable(outcome, 24),
            peer=storable(record.peer, 100),
        )
        for patient_key, what in sorted(record.patients.items())
    ]


def chain_hash(prev_hash: str, chain_id: str, seq: int, event: AuditEvent) -> str:
    """The hash linking an entry to the one before it: SHA-256 over the previous hash and every
    field of the entry, in a fixed canonical form."""
    canonical = json.dumps(
        [
            prev_hash,
            chain_id,
            seq,
            event.at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
            event.role,
            event.credential,
            event.institution_id,
            event.patient_key,
            event.rpc,
            event.what,
            event.outcome,
            event.peer,
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
