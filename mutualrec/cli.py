"""The ``mutualrec`` command: serve, database, administration and client commands."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from sqlalchemy.orm import Session, sessionmaker

from mutualrec.config import ConfigError, load_settings
from mutualrec.storage.db import (
    SchemaOutOfDate,
    current_revision,
    ensure_schema,
    head_revision,
    make_engine,
    upgrade,
)

DEFAULT_SERVER = "127.0.0.1:50051"


def _cmd_serve(_args: argparse.Namespace) -> int:
    from mutualrec.server import serve, serve_processes

    settings = load_settings()
    if settings.processes > 1:
        return serve_processes(settings)
    asyncio.run(serve(settings))
    return 0


def _cmd_db_upgrade(_args: argparse.Namespace) -> int:
    settings = load_settings()
    engine = make_engine(settings.database_url)
    upgrade(engine)
    print(f"database schema at {current_revision(engine)}")
    return 0


def _cmd_db_current(_args: argparse.Namespace) -> int:
    engine = make_engine(load_settings().database_url)
    print(
        f"database schema at {current_revision(engine) or 'nothing'}; code needs {head_revision()}"
    )
    return 0


def _admin_sessions() -> sessionmaker[Session]:

    settings = load_settings()
    engine = make_engine(settings.database_url)
    ensure_schema(engine, auto_migrate=settings.auto_migrate)
    return sessionmaker(engine)


def _cmd_add_institution(args: argparse.Namespace) -> int:
    from mutualrec.storage.institutions import add_institution

    with _admin_sessions().begin() as session:
        institution = add_institution(session, args.code, args.name, args.district, args.level)
        print(f"institution {institution.code} ({institution.name}) added")
    return 0


def _cmd_issue_key(args: argparse.Namespace) -> int:
    from mutualrec.storage.institutions import issue_institution_key

    with _admin_sessions().begin() as session:
        token = issue_institution_key(session, args.institution)
    print(token)
    print("store this key now: the service keeps only its hash", file=sys.stderr)
    return 0


def _cmd_revoke_key(args: argparse.Namespace) -> int:
    from mutualrec.storage.institutions import revoke_key

    with _admin_sessions().begin() as session:
        revoked = revoke_key(session, args.key_id)
    print("revoked" if revoked else "no live key with that id")
    return 0 if revoked else 1


def _api_key(args: argparse.Namespace) -> str:
    key = args.key or os.environ.get("MUTUALREC_API_KEY", "")
    if not key:
        raise ConfigError("give the institution's API key with --key or MUTUALREC_API_KEY")
    return str(key)


def _cmd_upload(args: argparse.Namespace) -> int:
    from mutualrec.client.upload import Progress, find_files, make_header, upload_study
    from mutualrec.v1 import ingest_pb2

    files = find_files(args.paths)
    if not files:
        print("no files to upload", file=sys.stderr)
        return 2
    header = make_header(args.patient_id, args.id_type, args.country, args.accession, args.item)
    show = sys.stderr.isatty() and not args.json

    def on_progress(p: Progress) -> None:
        if show:
            print(
                f"\r{p.files_sent}/{p.files_total} files, "
                f"{p.bytes_sent / 1e6:.1f}/{p.bytes_total / 1e6:.1f} MB",
                end="",
                file=sys.stderr,
                flush=True,
            )

    with grpc.insecure_channel(args.server) as channel:
        response = upload_study(channel, _api_key(args), header, files, on_progress=on_progress)
    if show:
        print(file=sys.stderr)
    if args.json:
        print(
            json.dumps(
                MessageToDict(response, preserving_proto_field_name=True),
                indent=2,
                ensure_ascii=False,
            )
        )
    else:
        for item in response.instances:
            kind = ingest_pb2.InstanceOutcomeKind.Name(item.outcome)
            line = f"{kind:<20} {item.source_name} {item.sop_instance_uid}"
            if item.outcome == ingest_pb2.REJECTED:
                line += f"\n    {item.reason}" + "".join(
                    f"\n    {v.field}: {v.description}" for v in item.violations
                )
            print(line)
        c = response.counts
        print(
            f"stored {c.stored}, duplicate {c.duplicate_identical}, "
            f"new version {c.new_version}, rejected {c.rejected}"
        )
        if response.HasField("study"):
            s = response.study
            print(
                f"study {s.study_instance_uid}: {s.series_count} series, "
                f"{s.instance_count} instances, {s.size_bytes} bytes"
            )
    return 1 if response.counts.rejected else 0


def _cmd_study_status(args: argparse.Namespace) -> int:
    from mutualrec.client.upload import auth_metadata
    from mutualrec.v1 import ingest_pb2, ingest_pb2_grpc

    with grpc.insecure_channel(args.server) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        response = stub.GetStudyStatus(
            ingest_pb2.GetStudyStatusRequest(study_instance_uid=args.study_uid),
            metadata=auth_metadata(_api_key(args)),
        )
    print(
        json.dumps(
            MessageToDict(response, preserving_proto_field_name=True), indent=2, ensure_ascii=False
        )
    )
    return 0


def _print_submission(name: str, response: Any) -> None:
    from mutualrec.v1 import ingest_pb2

    for entry in response.entries:
        kind = ingest_pb2.EntryOutcomeKind.Name(entry.outcome)
        line = f"{kind:<20} entry[{entry.index}] {entry.resource_type} {entry.identity}"
        if entry.version:
            line += f" v{entry.version}"
        if entry.outcome == ingest_pb2.ENTRY_REJECTED:
            line += "".join(f"\n    {v.field}: {v.description}" for v in entry.violations)
        print(line)
    c = response.counts
    print(
        f"{name}: created {c.created}, new version {c.updated_new_version}, unchanged "
        f"{c.unchanged}, withdrawn {c.withdrawn}, rejected {c.rejected}"
    )


def _cmd_submit_fhir(args: argparse.Namespace) -> int:
    from mutualrec.client.fhir import REFUSALS, refusal, response_dict, submit_document

    key = _api_key(args)
    report: list[dict[str, Any]] = []
    rejected = False
    with grpc.insecure_channel(args.server, options=_large_messages()) as channel:
        for name in args.files:
            body = Path(name).read_bytes()
            try:
                response = submit_document(channel, key, body, args.fhir_version)
            except grpc.RpcError as error:
                if error.code() not in REFUSALS:
                    raise
                rejected = True
                refused = refusal(error)
                report.append({"file": name, "refused": refused})
                if not args.json:
                    print(f"{name}: refused, {refused['code']}: {refused['message']}")
                    for v in refused["violations"]:
                        print(f"    {v['field']}: {v['description']}")
                continue
            rejected = rejected or response.counts.rejected > 0
            report.append({"file": name, "response": response_dict(response)})
            if not args.json:
                _print_submission(name, response)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    return 1 if rejected else 0


def _large_messages() -> list[tuple[str, int]]:
    # The server sets the real limit (MUTUALREC_MAX_FHIR_MIB) and answers precisely beyond it.
    return [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``mutualrec`` command."""
    parser = argparse.ArgumentParser(prog="mutualrec", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("serve", help="run the gRPC server").set_defaults(run=_cmd_serve)

    db = commands.add_parser("db", help="database schema").add_subparsers(dest="db", required=True)
    db.add_parser("upgrade", help="apply migrations").set_defaults(run=_cmd_db_upgrade)
    db.add_parser("current", help="show the schema revision").set_defaults(run=_cmd_db_current)

    admin = commands.add_parser("admin", help="administration").add_subparsers(
        dest="admin", required=True
    )
    add = admin.add_parser("add-institution", help="register an institution")
    add.add_argument("--code", required=True)
    add.add_argument("--name", required=True)
    add.add_argument("--district", required=True)
    add.add_argument("--level", required=True, choices=["tertiary", "secondary", "primary"])
    add.set_defaults(run=_cmd_add_institution)
    issue = admin.add_parser("issue-key", help="make an API key for an institution")
    issue.add_argument("--institution", required=True, metavar="CODE")
    issue.set_defaults(run=_cmd_issue_key)
    revoke = admin.add_parser("revoke-key", help="revoke an API key by its id")
    revoke.add_argument("key_id")
    revoke.set_defaults(run=_cmd_revoke_key)

    def client_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--server", default=os.environ.get("MUTUALREC_SERVER", DEFAULT_SERVER))
        sub.add_argument("--key", help="API key (default: MUTUALREC_API_KEY)")

    up = commands.add_parser("upload", help="upload DICOM files or folders as one study")
    up.add_argument("paths", nargs="+", metavar="PATH")
    up.add_argument("--patient-id", required=True, help="identity document number")
    up.add_argument(
        "--id-type",
        default="RESIDENT_ID_CARD",
        choices=[
            "RESIDENT_ID_CARD",
            "PASSPORT",
            "E_HEALTH_CARD",
            "MAINLAND_TRAVEL_PERMIT",
            "FOREIGN_PERMANENT_RESIDENT_ID",
        ],
    )
    up.add_argument("--country", default="", help="issuing country (ISO alpha-3), passports")
    up.add_argument("--accession", default="", help="the hospital's accession number")
    up.add_argument("--item", default="", help="catalog item code the RIS performed")
    up.add_argument("--json", action="store_true", help="print the outcomes as JSON")
    client_options(up)
    up.set_defaults(run=_cmd_upload)

    status = commands.add_parser("study-status", help="which instances the region holds")
    status.add_argument("study_uid")
    client_options(status)
    status.set_defaults(run=_cmd_study_status)

    fhir = commands.add_parser(
        "submit-fhir", help="submit lab results: FHIR Observations or batch/transaction Bundles"
    )
    fhir.add_argument("files", nargs="+", metavar="FILE")
    fhir.add_argument("--fhir-version", choices=["R4", "R5"], default="R4")
    fhir.add_argument("--json", action="store_true", help="print the outcomes as JSON")
    client_options(fhir)
    fhir.set_defaults(run=_cmd_submit_fhir)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mutualrec`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except (ConfigError, SchemaOutOfDate, FileNotFoundError, ValueError, LookupError) as exc:
        print(f"mutualrec: {exc}", file=sys.stderr)
        return 2
    except grpc.RpcError as exc:
        print(f"mutualrec: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
