"""Hospitals' commands: upload studies, submit lab results, check at ordering time, record the
doctor's decision. They call the server with the hospital's API key (or mTLS)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import grpc

from mutualrec.cli import connection
from mutualrec.cli.options import client_options, identity_options, sub
from mutualrec.config import ClientSettings


def register(commands: Any, client: ClientSettings) -> None:
    """Add the hospitals' commands to the top-level commands."""
    up = sub(commands, "upload", help="upload DICOM files or folders as one study")
    up.add_argument("paths", nargs="+", metavar="PATH")
    identity_options(up, required=True)
    up.add_argument("--accession", default="", help="the hospital's accession number")
    up.add_argument("--item", default="", help="catalog item code the RIS performed")
    up.add_argument("--json", action="store_true", help="print the outcomes as JSON")
    client_options(up, client)
    up.set_defaults(run=_upload)

    status = sub(commands, "study-status", help="which instances the region holds")
    status.add_argument("study_uid", help="StudyInstanceUID, or a mutualrec://study/ link")
    status.add_argument("--json", action="store_true", help="print the reply as JSON")
    client_options(status, client)
    status.set_defaults(run=_study_status)

    held = sub(
        commands,
        "unlinked-studies",
        help="studies the PACS sent for PatientIDs not yet linked to a patient",
    )
    held.add_argument("--limit", type=int, default=0, help="at most this many (default: all)")
    held.add_argument("--json", action="store_true", help="print the studies as JSON")
    client_options(held, client)
    held.set_defaults(run=_unlinked_studies)

    link = sub(
        commands,
        "link-patient",
        help="link the hospital's PatientID to a patient: its held studies become theirs",
    )
    link.add_argument(
        "dicom_patient_id", metavar="PATIENTID", help="the hospital's PatientID (0010,0020)"
    )
    identity_options(link, required=True)
    link.add_argument("--json", action="store_true", help="print the reply as JSON")
    client_options(link, client)
    link.set_defaults(run=_link_patient)

    fhir = sub(
        commands,
        "submit-fhir",
        help="submit lab results: FHIR Observations or batch/transaction Bundles",
    )
    fhir.add_argument("files", nargs="+", metavar="FILE")
    fhir.add_argument("--fhir-version", choices=["R4", "R5"], default="R4")
    fhir.add_argument("--json", action="store_true", help="print the outcomes as JSON")
    client_options(fhir, client)
    fhir.set_defaults(run=_submit_fhir)

    check = sub(
        commands,
        "check",
        help="which ordered items the patient already holds a recognizable result of",
    )
    check.add_argument("items", nargs="+", metavar="ITEM", help="catalog, LOINC or local codes")
    identity_options(check, required=True)
    check.add_argument("--order-id", default="", help="the HIS's order number, for the record")
    check.add_argument("--department", default="")
    check.add_argument(
        "--lang", default="", help="language of the reasons, Accept-Language style (default zh)"
    )
    check.add_argument("--json", action="store_true", help="print the reply as JSON")
    client_options(check, client)
    check.set_defaults(run=_check)

    from mutualrec.client.recognition import DECLINE_REASONS

    decide = sub(commands, "decide", help="record the doctor's decision on a check line")
    decide.add_argument("check_id")
    decide.add_argument("item", metavar="ITEM", help="the line's catalog item code, or its number")
    decide.add_argument("decision", choices=["accept", "decline"])
    decide.add_argument(
        "--reason", choices=DECLINE_REASONS, help="why the doctor declines (with decline)"
    )
    decide.add_argument("--text", default="", help="the reason in words (needed for other)")
    decide.add_argument("--json", action="store_true", help="print the reply as JSON")
    client_options(decide, client)
    decide.set_defaults(run=_decide)


def _upload(args: argparse.Namespace) -> int:
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

    with connection.channel(args) as channel:
        response = upload_study(
            channel, connection.api_key(args), header, files, on_progress=on_progress
        )
    if show:
        print(file=sys.stderr)
    if args.json:
        connection.print_message(response)
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


def _study_status(args: argparse.Namespace) -> int:
    from mutualrec.client.links import study_uid
    from mutualrec.client.upload import auth_metadata
    from mutualrec.v1 import ingest_pb2, ingest_pb2_grpc

    with connection.channel(args) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        response = stub.GetStudyStatus(
            ingest_pb2.GetStudyStatusRequest(study_instance_uid=study_uid(args.study_uid)),
            metadata=auth_metadata(connection.api_key(args)),
        )
    if args.json:
        connection.print_message(response)
        return 0
    from mutualrec.client.table import RIGHT, render

    s = response.study
    when = f"{s.study_date} {s.study_time}".strip()
    print(
        f"study {s.study_instance_uid}\n"
        f"  {s.institution_code}  accession {s.accession_number or '-'}  {when}  "
        f"{','.join(s.modalities)} {','.join(s.body_parts) or '-'}"
        f"{'  contrast' if s.contrast else ''}  item {s.performed_item_code or '-'}\n"
        f"  {s.series_count} series, {s.instance_count} instances, {s.size_bytes} bytes"
    )
    rows = [
        (i.series_instance_uid, i.sop_instance_uid, str(i.version), str(i.size_bytes), i.sha256)
        for i in response.instances
    ]
    header = ("series", "instance", "version", "bytes", "sha256")
    for line in render(header, rows, (*"<<", RIGHT, RIGHT, "<"), indent="  "):
        print(line)
    return 0


def _unlinked_studies(args: argparse.Namespace) -> int:
    from mutualrec.client.table import RIGHT, render
    from mutualrec.client.upload import auth_metadata
    from mutualrec.v1 import ingest_pb2, ingest_pb2_grpc

    studies: list[Any] = []
    token = ""
    with connection.channel(args) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        while True:
            response = stub.ListUnlinkedStudies(
                ingest_pb2.ListUnlinkedStudiesRequest(page_token=token),
                metadata=auth_metadata(connection.api_key(args)),
            )
            studies.extend(response.studies)
            token = response.next_page_token
            if not token or (args.limit and len(studies) >= args.limit):
                break
    if args.limit:
        studies = studies[: args.limit]
    if args.json:
        connection.print_message(ingest_pb2.ListUnlinkedStudiesResponse(studies=studies))
        return 0
    if not studies:
        print("no study is held unlinked")
        return 0
    rows = [
        (
            s.patient_id,
            s.study_date or "-",
            ",".join(s.modalities),
            str(s.instance_count),
            s.study_instance_uid,
            s.description,
        )
        for s in studies
    ]
    header = ("PatientID", "date", "modality", "instances", "study", "description")
    for line in render(header, rows, ("<", "<", "<", RIGHT, "<", "<")):
        print(line)
    print(
        f"{len(studies)} studies held unlinked: mutualrec link-patient PATIENTID --patient-id ..."
    )
    return 0


def _link_patient(args: argparse.Namespace) -> int:
    from mutualrec.client.upload import auth_metadata, make_header
    from mutualrec.v1 import ingest_pb2, ingest_pb2_grpc

    header = make_header(args.patient_id, args.id_type, args.country, "", "")
    with connection.channel(args) as channel:
        response = ingest_pb2_grpc.IngestServiceStub(channel).LinkPatient(
            ingest_pb2.LinkPatientRequest(patient=header.patient, patient_id=args.dicom_patient_id),
            metadata=auth_metadata(connection.api_key(args)),
        )
    if args.json:
        connection.print_message(response)
        return 0
    linked = list(response.linked_study_instance_uids)
    print(f"PatientID {args.dicom_patient_id} linked; {len(linked)} held studies are the patient's")
    for uid in linked:
        print(f"  {uid}")
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
        f"{c.unchanged}, withdrawn {c.withdrawn}, rejected {c.rejected}, ignored {c.ignored}"
    )


def _submit_fhir(args: argparse.Namespace) -> int:
    from mutualrec.client.errors import refusal
    from mutualrec.client.fhir import REFUSALS, response_dict, submit_document

    key = connection.api_key(args)
    report: list[dict[str, Any]] = []
    rejected = False
    with connection.channel(args, connection.large_messages()) as channel:
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


def _check(args: argparse.Namespace) -> int:
    from mutualrec.client.recognition import check_order, check_report

    with connection.channel(args) as channel:
        response = check_order(
            channel,
            connection.api_key(args),
            args.patient_id,
            args.items,
            document_type=args.id_type,
            issuing_country=args.country,
            order_id=args.order_id,
            department=args.department,
            accept_language=args.lang,
        )
    if args.json:
        connection.print_message(response)
        return 0
    for text in check_report(response):
        print(text)
    return 0


def _decide(args: argparse.Namespace) -> int:
    from mutualrec.client.recognition import record_decision

    with connection.channel(args) as channel:
        response = record_decision(
            channel,
            connection.api_key(args),
            args.check_id,
            int(args.item) if args.item.isdigit() else args.item,
            args.decision,
            args.reason or "",
            args.text,
        )
    if args.json:
        connection.print_message(response)
    else:
        again = " (already recorded)" if response.already_recorded else ""
        print(f"line {response.line}: {args.decision}, booked {response.booked_saving}{again}")
    return 0
