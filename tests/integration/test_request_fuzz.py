"""Fuzzing every RPC over real gRPC, on SQLite and on PostgreSQL: messages generated from the
protos' own descriptors (so an RPC added to mutualrec.v1 is fuzzed without anyone listing it),
then every field of a plausible request replaced in turn by hostile values (NUL characters,
100 KB strings, dates at the ends of the calendar, extreme numbers), hostile FHIR documents and
DICOM instances in the bytes fields, and bytes that are not protobuf at all. No answer is an
internal error or UNAVAILABLE, and the server keeps serving. Seeded and bounded: the same calls
every run, a few seconds per database."""

from __future__ import annotations

import datetime as dt
import io
import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pydicom
import pytest
from google.protobuf import descriptor as pb_descriptor
from google.protobuf import message_factory
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement

from mutualrec.client.upload import auth_metadata
from mutualrec.identity import parse_identity, patient_key
from mutualrec.security.access import ADMIN, REGULATOR
from mutualrec.security.patient_tokens import mint_patient_token
from tests.conftest import (
    SAMPLES,
    RunningServer,
    make_settings,
    module_database,
    new_key,
    start_server,
)
from tests.fhir_docs import LIS, PATIENT_ID, bundle, encode, observation
from tests.helpers import (
    SERVICE_METHODS,
    file_messages,
    header_message,
    outcome_of_call,
    status_of_call,
    upload,
)

FD = pb_descriptor.FieldDescriptor
# What a server must never answer, whatever the request: a bug, not a refusal. UNAVAILABLE
# too: clients retry it, and a request that caused it would be retried forever.
INTERNAL = {
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.DATA_LOSS,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
}
CT = "ct_chest_contrast_hosp_a"
# Words a field of this service plausibly holds, so generated requests get past the first
# checks and into the deeper ones.
PLAUSIBLE = [
    "",
    " ",
    "LAB-K",
    "IMG-CT-CHEST",
    "2823-3",
    PATIENT_ID,
    "RESIDENT_ID_CARD",
    "1999-02-30",
    "1.2.840.10008.1.2.1",
    "1.2.3",
    "00000000-0000-0000-0000-000000000000",
    "shl_0",
    "H500103001",
    "CT",
    "\x00",
    "中文",
    "x" * 300,
]
INT_RANGES = {
    FD.TYPE_INT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FD.TYPE_INT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FD.TYPE_UINT32: (0, 2**32 - 1),
    FD.TYPE_FIXED32: (0, 2**32 - 1),
    FD.TYPE_UINT64: (0, 2**64 - 1),
    FD.TYPE_FIXED64: (0, 2**64 - 1),
}
# What replaces each string field in turn; "{}" stands for the field's plausible value.
HOSTILE_STRINGS = [
    "\x00",
    "{}\x00",
    "\x00{}",
    "{}\x00{}",
    "A" * 100_000,
    "9" * 40,
    "-1",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "0001-01-01",
    "9999-12-31",
    "\u202e\ufeff\U0001f600",
]
# Bytes that are not a message of any RPC: a bad tag, a length past the end, a varint that
# never ends, an end-group with no group.
NOT_PROTOBUF = [
    b"\xff",
    b"\x0a\xff\xff\xff\xff\x0f",
    b"\x0a\x05ab",
    b"\x08" + b"\xff" * 11,
    b"\x0c",
    bytes(range(256)),
]
# Encoded surrogates (not UTF-8) and a truncated sequence, the length of the placeholder.
PLACEHOLDER = b"@@@"
BAD_UTF8 = [b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xc3(x"]


def _scalar(field: pb_descriptor.FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type == FD.TYPE_MESSAGE:
        return messages(field.message_type, depth + 1)
    if field.type == FD.TYPE_STRING:
        return st.sampled_from(PLAUSIBLE) | st.text(max_size=40)
    if field.type == FD.TYPE_BYTES:
        return st.binary(max_size=300)
    if field.type == FD.TYPE_BOOL:
        return st.booleans()
    if field.type == FD.TYPE_ENUM:
        numbers = [v.number for v in field.enum_type.values]
        return st.sampled_from(numbers) | st.integers(-3, max(numbers) + 3)
    if field.type in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        return st.floats(width=32 if field.type == FD.TYPE_FLOAT else 64)
    low, high = INT_RANGES[field.type]
    return st.sampled_from([0, 1, -1, 20, 100, 3600]).filter(lambda n: low <= n <= high) | (
        st.integers(low, high)
    )


def messages(descriptor: pb_descriptor.Descriptor, depth: int = 0) -> st.SearchStrategy[Any]:
    """Messages of ``descriptor`` with any subset of its fields set (nesting cut at depth 3)."""
    cls = message_factory.GetMessageClass(descriptor)
    if depth > 3:
        return st.just(cls())
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            continue
        value = _scalar(field, depth)
        optional[field.name] = st.lists(value, max_size=3) if field.is_repeated else value
    return st.fixed_dictionaries({}, optional=optional).map(lambda kw: cls(**kw))


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def fuzzed(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    manifest: dict[str, Any],
) -> Iterator[dict[str, Any]]:
    """One server per database for every RPC's fuzzing, a credential of every role, and a
    stored study and lab result for requests to find."""
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    databases = module_database(request, tmp, "mutualrec_fuzz")
    servers = start_server(make_settings(tmp, MUTUALREC_DATABASE_URL=next(databases)))
    server: RunningServer = next(servers)
    try:
        study = manifest[CT]
        hospital = server.add_hospital(study["institution_code"])
        with server.runtime.sessions.begin() as session:
            admin = new_key(session, ADMIN)
            regulator = new_key(session, REGULATOR)
        settings_ = server.runtime.settings
        key = patient_key(
            parse_identity("RESIDENT_ID_CARD", PATIENT_ID), settings_.patient_key_secret
        )
        patient = mint_patient_token(settings_.token_secret, key, dt.timedelta(hours=1)).token
        files = sorted((SAMPLES / CT).glob("*.dcm"))
        upload(server.channel, hospital, [header_message(study), *file_messages(files[:2])])
        yield {
            "server": server,
            "hospital": hospital,
            "admin": admin,
            "regulator": regulator,
            "patient": patient,
            "study": study,
            "instance": files[0],
        }
    finally:
        servers.close()
        databases.close()


def _credential(method: pb_descriptor.MethodDescriptor, roles: dict[str, Any]) -> str:
    service = method.containing_service.name
    if service in ("IngestService", "RecognitionService", "CatalogService"):
        return str(roles["hospital"])
    if service == "StatisticsService":
        return str(roles["regulator"])
    if service == "IdentityService":
        return str(roles["admin"])
    return str(roles["patient"])


def _ids(method: pb_descriptor.MethodDescriptor) -> str:
    return f"{method.containing_service.name}.{method.name}"


@pytest.mark.parametrize("method", SERVICE_METHODS, ids=_ids)
def test_no_request_gets_an_internal_error(
    fuzzed: dict[str, Any], method: pb_descriptor.MethodDescriptor
) -> None:
    server: RunningServer = fuzzed["server"]
    key = _credential(method, fuzzed)
    request = messages(method.input_type)
    strategy = st.lists(request, max_size=4).map(iter) if method.client_streaming else request

    @settings(
        max_examples=30,
        deadline=None,
        derandomize=True,
        # No shrinking: a failure is reported as found, and the run stays bounded.
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(strategy)
    def check(sent: Any) -> None:
        status = status_of_call(server.channel, method, sent, key)
        assert status not in INTERNAL, (method.full_name, status)

    check()
    health = health_pb2_grpc.HealthStub(server.channel).Check(health_pb2.HealthCheckRequest())
    assert health.status == health_pb2.HealthCheckResponse.SERVING


# --- Every field of a plausible request, replaced in turn -----------------------------------


def _plausible_strings(fuzzed: dict[str, Any]) -> dict[str, str]:
    """What a field of this name holds in a request that gets far into its RPC."""
    study = fuzzed["study"]
    today = dt.date.today()
    return {
        "document_number": PATIENT_ID,
        "ordered_codes": "LAB-K",
        "code": "LAB-K",
        "item_code": "LAB-K",
        "study_instance_uid": study["study_instance_uid"],
        "series_instance_uid": study["files"][0]["series_instance_uid"],
        "accession_number": study["accession_number"],
        "performed_item_code": study["performed_item_code"],
        "from_date": (today - dt.timedelta(days=30)).isoformat(),
        "to_date": today.isoformat(),
        "expire_time": (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat(),
        "source_name": "instance.dcm",
        "check_id": str(uuid.UUID(int=0)),
    }


_PLAUSIBLE_INTS = {"page_size": 10, "ttl_seconds": 3600}


def _lab_document() -> bytes:
    issued = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=2)
    return encode(bundle([observation("K-FUZZ-1", issued=issued.isoformat())]))


def _base(descriptor: pb_descriptor.Descriptor, plausible: dict[str, Any], depth: int = 0) -> Any:
    """A message of ``descriptor`` with every field (one member of each oneof) plausible."""
    message = message_factory.GetMessageClass(descriptor)()
    for field in descriptor.fields:
        if field.containing_oneof is not None and field.containing_oneof.fields[0] is not field:
            continue
        if field.type == FD.TYPE_MESSAGE:
            if depth < 3 and not field.message_type.GetOptions().map_entry:
                inner = _base(field.message_type, plausible, depth + 1)
                target = getattr(message, field.name)
                (target.add() if field.is_repeated else target).CopyFrom(inner)
            continue
        value = plausible.get(field.name)
        if value is None and field.type == FD.TYPE_ENUM:
            value = 1 if len(field.enum_type.values) > 1 else 0
        if value is None and field.type == FD.TYPE_STRING:
            value = ""
        if value is None:
            value = _PLAUSIBLE_INTS.get(field.name, 0) if field.type != FD.TYPE_BYTES else b""
            if field.type == FD.TYPE_BOOL:
                value = False
        if field.is_repeated:
            getattr(message, field.name).append(value)
        else:
            setattr(message, field.name, value)
    return message


def _leaves(
    descriptor: pb_descriptor.Descriptor, prefix: tuple[str, ...] = (), depth: int = 0
) -> Iterator[tuple[tuple[str, ...], pb_descriptor.FieldDescriptor]]:
    for field in descriptor.fields:
        if field.type == FD.TYPE_MESSAGE:
            if depth < 3 and not field.message_type.GetOptions().map_entry:
                yield from _leaves(field.message_type, (*prefix, field.name), depth + 1)
        else:
            yield (*prefix, field.name), field


def _with(message: Message, path: tuple[str, ...], value: Any) -> Message:
    changed = type(message)()
    changed.CopyFrom(message)
    target = changed
    for name in path[:-1]:
        target = getattr(target, name)
        if isinstance(target, Message):
            continue
        target = target[0] if len(target) else target.add()  # a repeated message
    field = target.DESCRIPTOR.fields_by_name[path[-1]]
    if field.is_repeated:
        del getattr(target, path[-1])[:]
        getattr(target, path[-1]).append(value)
    else:
        setattr(target, path[-1], value)
    return changed


def _dicom(path: Path, keyword: str, value: str) -> bytes:
    """The instance at ``path`` with ``keyword`` set to ``value`` as written, valid or not (an
    integer string written as LO so pydicom does not convert it)."""
    ds = pydicom.dcmread(path)
    vr = dictionary_VR(keyword)
    ds[keyword] = DataElement(tag_for_keyword(keyword), "LO" if vr == "IS" else vr, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


HOSTILE_DICOM = [
    ("InstanceNumber", "1e30"),
    ("InstanceNumber", "99999999999"),
    ("InstanceNumber", "-99999999999"),
    ("SeriesNumber", "1e999"),
    ("SeriesNumber", "nan"),
    ("StudyDescription", "CT\x00chest"),
    ("SeriesDescription", "\x00"),
    ("PatientID", "A0001\x002345"),
    ("AccessionNumber", "CT\x0024"),
    ("BodyPartExamined", "CHE\x00ST"),
    ("ContrastBolusAgent", "IODINE\x00"),
    ("SOPInstanceUID", "1.2.3\x004"),
    ("StudyDate", "00010101"),
    ("StudyTime", "999999.9999999"),
    ("StudyDescription", "\u00e9" * 5000),
]


def _json_lab(**changes: Any) -> dict[str, Any]:
    issued = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=2)
    resource = observation("K-HOSTILE", issued=issued.isoformat())
    resource.update(changes)
    return bundle([resource])


def _hostile_fhir() -> list[bytes]:
    depth = 100_000
    raw = [
        b'{"resourceType":"Bundle","type":"batch","entry":' + b"[" * depth + b"]" * depth + b"}",
        b'{"resourceType":"Bundle","type":"batch","entry":['
        + b'{"a":' * depth
        + b"1"
        + b"}" * depth
        + b"]}",
        b'{"resourceType":"Observation","id":"\\u0000"}',
        b'{"resourceType":"Bundle","type":"batch","id":"\\ud800","entry":[]}',
        b'{"resourceType\\u0000":"Bundle"}',
        b'\xef\xbb\xbf{"resourceType":"Bundle","type":"batch","entry":[{"resource":NaN}]}',
        b"\xed\xa0\x80",
    ]
    documents = [
        _json_lab(identifier=[{"system": LIS, "value": "K\x00"}]),
        _json_lab(identifier=[{"system": LIS, "value": "K\ud800"}]),
        _json_lab(identifier=[{"system": "\udfff", "value": "K-1"}]),
        _json_lab(status="final\x00"),
        _json_lab(effectiveDateTime="0001-01-01T00:00:00+14:00"),
        _json_lab(effectiveDateTime="9999-12-31T23:59:59-14:00"),
        _json_lab(issued="0001-01-01T00:00:00+14:00"),
        _json_lab(effectiveDateTime="0001"),
        _json_lab(valueQuantity={"value": 1e308, "unit": "mmol/L"}),
        _json_lab(code={"coding": [{"system": "http://loinc.org", "code": "2823-3\x00"}]}),
        _json_lab(note=[{"text": "\x00" * 10}], extension=[{"url": "\ud800"}]),
        _json_lab(identifier=[{"system": LIS, "value": "K" * 100_000}]),
    ]
    dumped = [json.dumps(d, ensure_ascii=True).encode("ascii") for d in documents]
    # Just within what the parser reads: deep, and reaching whatever walks the document.
    deep_but_readable = encode(_json_lab()).replace(
        b'"status"', b'"extension":' + b"[" * 900 + b"]" * 900 + b',"status"', 1
    )
    # Just within what the parser reads: deep, and reaching whatever walks the document.
    deep_but_readable = encode(_json_lab()).replace(
        b'"status"', b'"extension":' + b"[" * 900 + b"]" * 900 + b',"status"', 1
    )
    numbers = [
        encode(_json_lab()).replace(b"4.1", number)
        for number in (b"1e999", b"-1e999", b"1e-999", b"9" * 4000, b"NaN", b"Infinity")
    ]
    return [*raw, *dumped, deep_but_readable, *numbers]


def _variants(
    field: pb_descriptor.FieldDescriptor, plausible: Any, fuzzed: dict[str, Any]
) -> list[Any]:
    if field.type == FD.TYPE_STRING:
        return [v.replace("{}", plausible or "") for v in HOSTILE_STRINGS]
    if field.type == FD.TYPE_BYTES:
        if field.name == "body":
            return _hostile_fhir()
        if field.name == "data":
            return [_dicom(fuzzed["instance"], k, v) for k, v in HOSTILE_DICOM]
        return [b"\x00" * 10, bytes(range(256)) * 4]
    if field.type == FD.TYPE_ENUM:
        return [-1, 99, 2**31 - 1]
    if field.type == FD.TYPE_BOOL:
        return [True]
    if field.type in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        return [float("nan"), float("inf"), -float("inf"), 1e308]
    low, high = INT_RANGES[field.type]
    return sorted(n for n in {low, high, -1, 0, 2**31 - 1} if low <= n <= high)


def _stream_base(method: pb_descriptor.MethodDescriptor, plausible: dict[str, Any]) -> list[Any]:
    """The messages of a plausible client stream: one message per member of the request's
    oneof, in order (UploadStudy: a header, then a chunk), or one plain message."""
    descriptor = method.input_type
    oneof = descriptor.oneofs[0].fields if descriptor.oneofs else []
    if not oneof:
        return [_base(descriptor, plausible)]
    cls = message_factory.GetMessageClass(descriptor)
    sent = []
    for member in oneof:
        message = cls()
        getattr(message, member.name).CopyFrom(_base(member.message_type, plausible, 1))
        sent.append(message)
    return sent


def _mutations(
    method: pb_descriptor.MethodDescriptor, fuzzed: dict[str, Any]
) -> Iterator[tuple[str, Any]]:
    """(label, request) for every hostile value of every field of ``method``'s request."""
    plausible: dict[str, Any] = {
        **_plausible_strings(fuzzed),
        "body": _lab_document(),
        "data": fuzzed["instance"].read_bytes(),
        "end_of_instance": True,
    }
    stream = _stream_base(method, plausible)
    for path, field in _leaves(method.input_type):
        for number, value in enumerate(_variants(field, plausible.get(path[-1]), fuzzed)):
            label = f"{'.'.join(path)} #{number}: {str(value)[:40]!r}"
            if not method.client_streaming:
                yield label, _with(stream[0], path, value)
                continue
            for position, message in enumerate(stream):
                if len(path) > 1 and not message.HasField(path[0]):
                    continue
                sent = list(stream)
                sent[position] = _with(message, path, value)
                yield label, iter(sent)


def _tally(fuzzed: dict[str, Any], method: pb_descriptor.MethodDescriptor) -> Counter[str]:
    tallies: dict[str, Counter[str]] = fuzzed.setdefault("tallies", {})
    return tallies.setdefault(method.full_name, Counter())


@pytest.mark.parametrize("method", SERVICE_METHODS, ids=_ids)
def test_hostile_values_in_every_field(
    fuzzed: dict[str, Any], method: pb_descriptor.MethodDescriptor
) -> None:
    server: RunningServer = fuzzed["server"]
    key = _credential(method, fuzzed)
    tally = _tally(fuzzed, method)
    bad: list[str] = []
    for label, request in _mutations(method, fuzzed):
        status, details = outcome_of_call(server.channel, method, request, key)
        # gRPC's own answer when the reply's metadata (a status quoting the request, say) is
        # more than the client takes: the caller never learns what the server said.
        outcome = "METADATA_TOO_LARGE" if "metadata size" in details else status.name
        # The guard's last resort for a value the database refused: a check is missing (the
        # call is refused whole, where a per-entry or per-instance violation was due).
        outcome = "DATABASE_REFUSED" if "cannot be stored; correlation id" in details else outcome
        tally[outcome] += 1
        if status in INTERNAL or outcome in ("METADATA_TOO_LARGE", "DATABASE_REFUSED"):
            bad.append(f"{label}: {outcome}")
    assert not bad, (method.full_name, bad)
    assert sum(tally.values()) > 0


# --- Bytes that are not a request -------------------------------------------------------------


def _raw_call(
    channel: grpc.Channel, method: pb_descriptor.MethodDescriptor
) -> Callable[[bytes, str], grpc.StatusCode]:
    """Send bytes as they are, as the request (or the first message of a request stream)."""
    kind = {
        (False, False): channel.unary_unary,
        (False, True): channel.unary_stream,
        (True, False): channel.stream_unary,
        (True, True): channel.stream_stream,
    }[method.client_streaming, method.server_streaming]
    call = kind(f"/{method.containing_service.full_name}/{method.name}")

    def send(data: bytes, credential: str) -> grpc.StatusCode:
        request: Any = iter([data]) if method.client_streaming else data
        try:
            reply = call(request, metadata=auth_metadata(credential), timeout=30)
            if method.server_streaming:
                list(reply)
        except grpc.RpcError as error:
            return error.code()  # type: ignore[no-any-return]
        return grpc.StatusCode.OK

    return send


def _not_utf8(method: pb_descriptor.MethodDescriptor, fuzzed: dict[str, Any]) -> Iterator[bytes]:
    """A plausible request serialized with one string field's bytes made invalid UTF-8."""
    plausible = {**_plausible_strings(fuzzed), "body": _lab_document()}
    first = _stream_base(method, plausible)[0]
    for path, field in _leaves(method.input_type):
        if field.type != FD.TYPE_STRING:
            continue
        if len(path) > 1 and not first.HasField(path[0]):
            continue
        data = _with(first, path, PLACEHOLDER.decode()).SerializeToString()
        for bad in BAD_UTF8:
            yield data.replace(PLACEHOLDER, bad)


@pytest.mark.parametrize("method", SERVICE_METHODS, ids=_ids)
def test_bytes_that_are_not_protobuf(
    fuzzed: dict[str, Any], method: pb_descriptor.MethodDescriptor
) -> None:
    server: RunningServer = fuzzed["server"]
    send = _raw_call(server.channel, method)
    key = _credential(method, fuzzed)
    tally = _tally(fuzzed, method)
    statuses = []
    for data in [*NOT_PROTOBUF, *_not_utf8(method, fuzzed)]:
        status = send(data, key)
        tally[status.name] += 1
        statuses.append(status)
    assert set(statuses) == {grpc.StatusCode.INVALID_ARGUMENT}, (method.full_name, statuses)


def test_server_still_serves_and_nothing_was_internal(fuzzed: dict[str, Any]) -> None:
    """After all the above: health says SERVING, and the tally (printed with ``-s``) has no
    internal status."""
    server: RunningServer = fuzzed["server"]
    health = health_pb2_grpc.HealthStub(server.channel).Check(health_pb2.HealthCheckRequest())
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    total: Counter[str] = Counter()
    for tally in fuzzed.get("tallies", {}).values():
        total.update(tally)
    print(f"\nfuzzed calls by status: {dict(total)} ({sum(total.values())} calls)")
    assert not ({c.name for c in INTERNAL} | {"METADATA_TOO_LARGE", "DATABASE_REFUSED"}) & set(
        total
    )
