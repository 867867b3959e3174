"""Client side of SubmitObservations: FHIR JSON files to the regional store."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from mutualrec.client.upload import auth_metadata
from mutualrec.v1 import ingest_pb2, ingest_pb2_grpc

FHIR_VERSIONS = {"R4": ingest_pb2.FHIR_R4, "R5": ingest_pb2.FHIR_R5}
# Whole-document refusals: the document (or the region's state) is at fault, not the service.
REFUSALS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)


def submit_document(
    channel: grpc.Channel, api_key: str, body: bytes, fhir_version: str = "R4"
) -> ingest_pb2.SubmitObservationsResponse:
    """Send one FHIR JSON document; raises grpc.RpcError when it is refused whole."""
    stub = ingest_pb2_grpc.IngestServiceStub(channel)
    response: ingest_pb2.SubmitObservationsResponse = stub.SubmitObservations(
        ingest_pb2.SubmitObservationsRequest(body=body, fhir_version=FHIR_VERSIONS[fhir_version]),
        metadata=auth_metadata(api_key),
    )
    return response


def response_dict(response: ingest_pb2.SubmitObservationsResponse) -> dict[str, Any]:
    """A reply as JSON-ready data, with the proto's field names."""
    return MessageToDict(response, preserving_proto_field_name=True)
