"""What no request may hold, whatever its RPC, found by walking the message's own descriptor.

Every string field of every request is checked here, once, before any servicer sees it: a new
RPC or field is covered without anyone remembering to. What is checked is what no field of this
service can mean and what the index cannot store: the NUL character (PostgreSQL refuses it in
text), and bytes that are not protobuf at all (a string that is not UTF-8, a truncated field).
"""

from __future__ import annotations

import functools
from collections import deque

from google.protobuf import descriptor as pb_descriptor
from google.protobuf.message import Message

from mutualrec.violations import Violation, quote

FD = pb_descriptor.FieldDescriptor
# Where a problem of the whole request is reported when no field can be named.
WHOLE_REQUEST = "request"


def _nul(path: str) -> Violation:
    return Violation(path, "must not contain the NUL character (U+0000)", "NUL_CHARACTER")


_MAP, _REPEATED, _MESSAGE, _STRING = range(4)


@functools.cache
def _walked_fields(descriptor: pb_descriptor.Descriptor) -> tuple[tuple[str, int], ...]:
    """The fields of a message type that may hold a string, each with how to reach its
    strings; worked out once per type, as every message of a stream (every chunk of an upload)
    is checked."""
    walked = []
    for field in descriptor.fields:
        # Bytes and numbers are never read: an upload chunk's megabyte is not copied here.
        if field.type != FD.TYPE_STRING and field.message_type is None:
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            kind = _MAP
        elif field.is_repeated:
            kind = _REPEATED
        elif field.message_type is not None:
            kind = _MESSAGE
        else:
            kind = _STRING
        walked.append((field.name, kind))
    return tuple(walked)


def string_violations(message: Message) -> list[Violation]:
    """A violation for every string (and map key) of ``message`` holding a NUL, by field path:
    ``header.patient.document_number``, ``ordered_codes[2]``."""
    found: list[Violation] = []
    # Breadth first and without recursion: a hostile message nests as deep as protobuf allows.
    pending: deque[tuple[Message, str]] = deque([(message, "")])
    while pending:
        current, prefix = pending.popleft()
        for name, kind in _walked_fields(current.DESCRIPTOR):
            path = prefix + name
            if kind == _MAP:
                mapping = getattr(current, name)
                items = [(f"{path}[{quote(str(key))}]", key, mapping[key]) for key in mapping]
                found += [_nul(where) for where, key, _ in items if "\0" in str(key)]
                values = [(where, item) for where, _, item in items]
            elif kind == _REPEATED:
                values = [(f"{path}[{i}]", v) for i, v in enumerate(getattr(current, name))]
            elif kind == _MESSAGE:
                values = [(path, getattr(current, name))] if current.HasField(name) else []
            else:
                values = [(path, getattr(current, name))]
            for where, item in values:
                if isinstance(item, Message):
                    pending.append((item, where + "."))
                elif isinstance(item, str) and "\0" in item:
                    found.append(_nul(where))
    return found


class _Truncated(Exception):
    """The bytes end inside a field."""


def _varint(data: bytes, position: int) -> tuple[int, int]:
    value = 0
    for shift in range(0, 70, 7):
        if position >= len(data):
            raise _Truncated
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
    raise _Truncated  # more than ten bytes: no varint is that long


_FIXED = {1: 8, 5: 4}


def _fault(data: bytes, descriptor: pb_descriptor.Descriptor, prefix: str) -> Violation | None:
    """The first field of ``data`` (a message of ``descriptor``) that is not valid protobuf."""
    seen: dict[int, int] = {}
    position = 0
    path = prefix.rstrip(".") or WHOLE_REQUEST
    try:
        while position < len(data):
            tag, position = _varint(data, position)
            number, wire = tag >> 3, tag & 7
            field = descriptor.fields_by_number.get(number)
            path = prefix + (field.name if field is not None else f"#{number}")
            if field is not None and field.is_repeated:
                path += f"[{seen.get(number, 0)}]"
                seen[number] = seen.get(number, 0) + 1
            if wire == 0:
                _, position = _varint(data, position)
            elif wire in _FIXED:
                position += _FIXED[wire]
            elif wire == 2:
                length, position = _varint(data, position)
                payload = data[position : position + length]
                position += length
                if position > len(data):
                    raise _Truncated
                if field is not None and field.type == FD.TYPE_STRING:
                    try:
                        payload.decode("utf-8")
                    except UnicodeDecodeError as exc:
                        return Violation(
                            path,
                            f"is not valid UTF-8 at byte {exc.start} (a lone surrogate, say)",
                            "NOT_UTF8",
                        )
                elif field is not None and field.message_type is not None:
                    inner = _fault(payload, field.message_type, path + ".")
                    if inner is not None:
                        return inner
            else:
                return Violation(
                    path,
                    f"has wire type {wire}, which this service never sends",
                    "MALFORMED_REQUEST",
                )
            if position > len(data):
                raise _Truncated
    except _Truncated:
        return Violation(path, "the bytes end inside this field", "MALFORMED_REQUEST")
    return None


def malformed_violation(data: bytes, descriptor: pb_descriptor.Descriptor | None) -> Violation:
    """Why ``data``, which protobuf refused to parse as ``descriptor``, is not a request: the
    first bad field when the wire format shows it, else the request as a whole."""
    found = None if descriptor is None else _fault(data, descriptor, "")
    return found or Violation(
        WHOLE_REQUEST,
        f"{len(data)} bytes that are not a valid protobuf message of this RPC",
        "MALFORMED_REQUEST",
    )
