"""The ``mutualrec`` command: serve, database, administration and client commands."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from sqlalchemy.orm import Session, sessionmaker

from mutualrec import __version__
from mutualrec.cli_help import document
from mutualrec.config import ConfigError, load_settings
from mutualrec.storage.db import (
    SchemaOutOfDate,
    current_revision,
    ensure_schema,
    head_revision,
    make_engine,
    upgrade,
)
from mutualrec.violations import Rejected, Violation

if TYPE_CHECKING:
    from mutualrec.matching.catalog import Catalog

DEFAULT_SERVER = "127.0.0.1:50051"


def _cmd_serve(_args: argparse.Namespace) -> int:
    from mutualrec.server import serve, serve_processes

    settings = load_settings()
    if settings.processes > 1:
        return serve_processes(settings)
    asyncio.run(serve(settings))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from mutualrec.client.demo import DemoError, default_samples, next_steps, run_demo

    settings = load_settings()
    samples = Path(args.samples) if args.samples else default_samples()
    with _channel(args) as channel:
        try:
            result = run_demo(channel, _admin_sessions(), settings.data_dir, samples, args.server)
        except DemoError as error:
            print(f"mutualrec demo: {error}", file=sys.stderr)
            return 2
    print("\nthe demo is loaded; try next:")
    for line in next_steps(result.env_file):
        print(f"  {line}")
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
        institution = add_institution(
            session,
            args.code,
            args.name,
            args.district,
            args.level,
            city=args.city,
            region=args.region,
        )
        print(f"institution {institution.code} ({institution.name}) added")
    return 0


def _cmd_issue_key(args: argparse.Namespace) -> int:
    from mutualrec.security.access import HOSPITAL
    from mutualrec.storage.institutions import issue_institution_key, issue_role_key

    if args.role != HOSPITAL:
        if args.institution:
            raise ValueError(f"a {args.role} key belongs to no institution: drop --institution")
        with _admin_sessions().begin() as session:
            token = issue_role_key(session, args.role)
        print(token)
        print("store this key now: the service keeps only its hash", file=sys.stderr)
        return 0
    if not args.institution:
        raise ValueError("a hospital key needs --institution CODE")
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
    if revoked:
        print(IN_EFFECT, file=sys.stderr)
    return 0 if revoked else 1


def _cmd_rotate_key(args: argparse.Namespace) -> int:
    from mutualrec.storage.institutions import rotate_key

    with _admin_sessions().begin() as session:
        rotation = rotate_key(session, args.key_id, dt.timedelta(hours=args.grace_hours))
    print(rotation.token)
    print(
        f"store this key now: the service keeps only its hash; {args.key_id} keeps working "
        f"until {rotation.old_key_until.isoformat(timespec='seconds')}",
        file=sys.stderr,
    )
    return 0


AdminCommand = Callable[[argparse.Namespace], int]
# Servers poll for administrators' changes once a second (mutualrec.change_watch).
IN_EFFECT = "in effect on every running server within about a second"


def _reporting_rejections(command: AdminCommand) -> AdminCommand:
    """``command``, printing a rejection violation by violation and exiting with status 2."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except Rejected as rejection:
            print(f"mutualrec: {rejection.summary}", file=sys.stderr)
            for violation in rejection.violations:
                print(f"  {violation.field}: {violation.description}", file=sys.stderr)
            return 2

    return run


def _read_text(name: str) -> str:
    """A file's text as it is on disk (no newline translation): its SHA-256 is the file's."""
    data = Path(name).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{name} is not UTF-8 text (byte {exc.start})") from None


def _current_catalog(session: Session) -> Catalog:
    from mutualrec.storage import catalog_store

    # A database no server has started on yet still checks against the packaged catalog.
    catalog_store.ensure_packaged_catalog(session)
    return catalog_store.current_catalog(session)


@_reporting_rejections
def _cmd_load_catalog(args: argparse.Namespace) -> int:
    from mutualrec.matching.catalog import load_catalog
    from mutualrec.storage.catalog_store import ensure_catalog

    text = _read_text(args.file)
    catalog = load_catalog(text, args.version)
    with _admin_sessions().begin() as session:
        recorded = ensure_catalog(session, catalog, text)
    state = "loaded" if recorded else "was already loaded with this content"
    print(f"catalog {catalog.version} {state}: {len(catalog.items)} items, sha256 {catalog.sha256}")
    return 0


@_reporting_rejections
def _cmd_reindex(args: argparse.Namespace) -> int:
    from mutualrec.services.reindex import ReindexProgress, reindex_lab_results
    from mutualrec.storage import catalog_store

    sessions = _admin_sessions()
    with sessions.begin() as session:
        catalog = (
            catalog_store.catalog_for_version(session, args.catalog_version)
            if args.catalog_version
            else _current_catalog(session)
        )
        # Read before the run: a batch holds SQLite's one write lock while it maps.
        mappings = catalog_store.all_institution_mappings(session)
    if catalog is None:
        raise Rejected.one(
            f"no catalog version {args.catalog_version!r} is recorded",
            "--catalog-version",
            "load it first (mutualrec admin load-catalog), or list them (catalog-versions)",
            "UNKNOWN_CATALOG_VERSION",
        )

    def report(progress: ReindexProgress) -> None:
        print(
            f"{progress.results} results, +{progress.rows_added} -{progress.rows_removed} "
            f"index rows, up to lab result {progress.last_lab_result_id}",
            flush=True,
        )

    final = reindex_lab_results(
        sessions, catalog, lambda i: mappings.get(i, {}), batch=args.batch, on_batch=report
    )
    print(f"reindexed under catalog {catalog.version}: {final.results} results")
    return 0


def _cmd_catalog_versions(_args: argparse.Namespace) -> int:
    from mutualrec.storage.catalog_store import catalog_versions

    with _admin_sessions()() as session:
        versions = catalog_versions(session)
    if not versions:
        print("no catalog version recorded yet: the server records the packaged one at start")
    for info in versions:
        current = "  (current)" if info is versions[-1] else ""
        print(
            f"{info.version:<12} {info.item_count:>4} items  "
            f"loaded {info.loaded_at.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S}Z  "
            f"sha256 {info.sha256}{current}"
        )
    return 0


@_reporting_rejections
def _cmd_load_mappings(args: argparse.Namespace) -> int:
    from mutualrec.storage.catalog_store import load_code_mappings

    text = _read_text(args.file)
    with _admin_sessions().begin() as session:
        catalog = _current_catalog(session)
        count = load_code_mappings(session, args.institution, text, catalog)
    print(
        f"code mapping of {args.institution} loaded: {count} local code(s), checked against "
        f"catalog {catalog.version}; it replaces the previous mapping"
    )
    print(IN_EFFECT, file=sys.stderr)
    return 0


def _moment(text: str, option: str, violations: list[Violation]) -> dt.datetime | None:
    """An ISO date or date-time; one without a zone is on the region's clock (Asia/Shanghai)."""
    from mutualrec.localtime import LOCAL_ZONE

    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        violations.append(
            Violation(
                option,
                f"{text!r} is not an ISO date (2026-01-01) or date-time (2026-01-01T08:00+08:00)",
                "BAD_DATETIME",
            )
        )
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=LOCAL_ZONE)


@_reporting_rejections
def _cmd_load_policy(args: argparse.Namespace) -> int:
    from mutualrec.storage.policy_store import ensure_policy

    text = _read_text(args.file)
    with _admin_sessions().begin() as session:
        policy, recorded = ensure_policy(session, text, _current_catalog(session))
    state = "loaded, in force" if recorded else "was already loaded with this content"
    rules = "; ".join(
        f"{category.value}: window from {policy.anchor(category).value}, "
        f"{policy.level_rule(category).value}"
        for category in policy.anchors
    )
    print(
        f"policy {policy.version} {state} (servers apply it within a minute): {rules}; "
        f"{len(policy.suspensions)} suspension(s); sha256 {policy.sha256}"
    )
    return 0


@_reporting_rejections
def _cmd_review_declared_item(args: argparse.Namespace) -> int:
    from mutualrec.services.result_indexing import review_declared_item

    uid = args.study.strip()
    with _admin_sessions().begin() as session:
        study = review_declared_item(session, uid, args.confirm, _current_catalog(session))
    if study is None:
        raise Rejected.one("no such study", "STUDY", f"no study {uid} is held", "NOT_FOUND")
    stands = "the declared item stands" if args.confirm else "the images' header stands"
    note = study.not_recognized_reason or "recognized"
    print(f"study {uid} ({study.performed_item_code or 'no declared item'}): {stands}; {note}")
    return 0


@_reporting_rejections
def _cmd_add_qualification(args: argparse.Namespace) -> int:
    from mutualrec.storage.catalog_store import add_qualification

    violations: list[Violation] = []
    valid_from = _moment(args.valid_from, "--from", violations)
    valid_until = None if args.until is None else _moment(args.until, "--until", violations)
    if valid_from is None or violations:
        raise Rejected(f"the qualification has {len(violations)} problem(s)", violations)
    with _admin_sessions().begin() as session:
        qualification_id = add_qualification(
            session,
            args.institution,
            item_code=args.item,
            category=args.category,
            scope=args.scope,
            valid_from=valid_from,
            valid_until=valid_until,
            catalog=_current_catalog(session),
        )
    what = f"item {args.item.strip().upper()}" if args.item else f"every {args.category} item"
    until = "further notice" if valid_until is None else valid_until.isoformat()
    print(
        f"qualification {qualification_id} added: {args.institution} holds {what}, "
        f"{args.scope} scope, from {valid_from.isoformat()} until {until}"
    )
    print(IN_EFFECT, file=sys.stderr)
    return 0


@_reporting_rejections
def _cmd_load_prices(args: argparse.Namespace) -> int:
    from mutualrec.storage.catalog_store import load_prices

    text = _read_text(args.file)
    with _admin_sessions().begin() as session:
        catalog = _current_catalog(session)
        count = load_prices(session, args.institution, text, catalog)
    print(
        f"price list of {args.institution} loaded: {count} item(s); "
        "it replaces the previous price list"
    )
    print(IN_EFFECT, file=sys.stderr)
    return 0


def _api_key(args: argparse.Namespace) -> str:
    """The API key to send; "" when a client certificate names the hospital instead."""
    key = args.key or os.environ.get("MUTUALREC_API_KEY", "")
    if not key and not _client_cert(args):
        raise ConfigError(
            "give the institution's API key with --key or MUTUALREC_API_KEY, "
            "or its client certificate with --cert and --cert-key"
        )
    return str(key)


def _client_cert(args: argparse.Namespace) -> tuple[str, str] | None:
    cert = getattr(args, "cert", None) or os.environ.get("MUTUALREC_CLIENT_CERT", "")
    key = getattr(args, "cert_key", None) or os.environ.get("MUTUALREC_CLIENT_KEY", "")
    if bool(cert) != bool(key):
        raise ConfigError("--cert and --cert-key (MUTUALREC_CLIENT_CERT, _KEY) go together")
    return (cert, key) if cert else None


def _channel(
    args: argparse.Namespace, options: list[tuple[str, Any]] | None = None
) -> grpc.Channel:
    """A channel to ``--server``: TLS when given the server's CA (``--ca``), with the
    hospital's client certificate when given one (mTLS), plaintext otherwise."""
    ca = getattr(args, "ca", None) or os.environ.get("MUTUALREC_SERVER_CA", "")
    pair = _client_cert(args)
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


def _print_message(message: Message) -> None:
    """A reply as indented JSON with the proto's field names (the --json output)."""
    print(
        json.dumps(
            MessageToDict(message, preserving_proto_field_name=True), indent=2, ensure_ascii=False
        )
    )


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

    with _channel(args) as channel:
        response = upload_study(channel, _api_key(args), header, files, on_progress=on_progress)
    if show:
        print(file=sys.stderr)
    if args.json:
        _print_message(response)
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
    from mutualrec.client.links import study_uid
    from mutualrec.client.upload import auth_metadata
    from mutualrec.v1 import ingest_pb2, ingest_pb2_grpc

    with _channel(args) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        response = stub.GetStudyStatus(
            ingest_pb2.GetStudyStatusRequest(study_instance_uid=study_uid(args.study_uid)),
            metadata=auth_metadata(_api_key(args)),
        )
    if args.json:
        _print_message(response)
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


def _cmd_submit_fhir(args: argparse.Namespace) -> int:
    from mutualrec.client.errors import refusal
    from mutualrec.client.fhir import REFUSALS, response_dict, submit_document

    key = _api_key(args)
    report: list[dict[str, Any]] = []
    rejected = False
    with _channel(args, _large_messages()) as channel:
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


def _cmd_check(args: argparse.Namespace) -> int:
    from mutualrec.client.recognition import check_order, check_report

    with _channel(args) as channel:
        response = check_order(
            channel,
            _api_key(args),
            args.patient_id,
            args.items,
            document_type=args.id_type,
            issuing_country=args.country,
            order_id=args.order_id,
            department=args.department,
            accept_language=args.lang,
        )
    if args.json:
        _print_message(response)
        return 0
    for text in check_report(response):
        print(text)
    return 0


def _cmd_decide(args: argparse.Namespace) -> int:
    from mutualrec.client.recognition import record_decision

    with _channel(args) as channel:
        response = record_decision(
            channel,
            _api_key(args),
            args.check_id,
            int(args.item) if args.item.isdigit() else args.item,
            args.decision,
            args.reason or "",
            args.text,
        )
    if args.json:
        _print_message(response)
    else:
        again = " (already recorded)" if response.already_recorded else ""
        print(f"line {response.line}: {args.decision}, booked {response.booked_saving}{again}")
    return 0


def _cmd_dev_ca(args: argparse.Namespace) -> int:
    from mutualrec.security.dev_ca import make_ca

    issued = make_ca(Path(args.out), days=args.days)
    print(f"development CA: {issued.cert} (key {issued.key}); not for real patients' data")
    return 0


def _cmd_dev_cert(args: argparse.Namespace) -> int:
    from mutualrec.security.dev_ca import make_client_cert, make_server_cert

    if bool(args.server_host) == bool(args.institution):
        raise ValueError("give either --server-host (a server certificate) or --institution")
    if args.server_host:
        issued = make_server_cert(Path(args.ca), Path(args.out), args.server_host, args.days)
    else:
        issued = make_client_cert(Path(args.ca), Path(args.out), args.institution, args.days)
    print(f"{issued.cert} (key {issued.key})")
    return 0


def _cmd_rebuild_statistics(args: argparse.Namespace) -> int:
    from mutualrec.storage import statistics_index

    del args
    with _admin_sessions().begin() as session:
        days = statistics_index.rebuild(session)
    print(f"tallied {days} days again from the record of checks and decisions")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from mutualrec.storage.factory import open_object_store
    from mutualrec.storage.sweep import sweep

    settings = load_settings()
    store = open_object_store(settings)
    report = sweep(
        store,
        _admin_sessions(),
        now=dt.datetime.now(dt.UTC),
        grace=dt.timedelta(minutes=args.grace_minutes),
        remove=not args.dry_run,
    )
    if args.verbose:
        for key in report.removed_keys:
            print(key)
    verb = "would remove" if args.dry_run else "removed"
    print(
        f"examined {report.examined} objects: {report.referenced} referenced, "
        f"{report.recent} too recent to judge, {verb} {report.removed} "
        f"({report.removed_bytes} bytes), and {report.removed_temporaries} stale temporary files"
    )
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    from mutualrec.identity import parse_identity, patient_key
    from mutualrec.storage import audit_log

    sessions = _admin_sessions()
    if args.verify:
        with sessions() as session:
            checked, problems = audit_log.verify(session)
        for problem in problems:
            print(f"chain {problem.chain_id} entry {problem.seq}: {problem.problem}")
        print(f"{checked} entries checked, {len(problems)} problems")
        return 1 if problems else 0
    if not args.patient_id:
        raise ValueError("give --patient-id ID (whose accesses to list) or --verify")
    settings = load_settings()
    key = patient_key(
        parse_identity(args.id_type, args.patient_id, args.country), settings.patient_key_secret
    )
    with sessions() as session:
        rows = audit_log.accesses(session, key, args.limit)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "time": access.at.isoformat(),
                        "role": access.role,
                        "institution_code": access.institution_code,
                        "credential": access.credential,
                        "rpc": access.rpc,
                        "what": access.what,
                        "outcome": access.outcome,
                        "peer": access.peer,
                    }
                    for _row_id, access in rows
                ],
                indent=2,
                ensure_ascii=False,
            )
        )
        return 0
    for _row_id, access in rows:
        who = access.institution_code or access.credential
        print(
            f"{access.at.isoformat(timespec='seconds')} {access.role:<9} {who:<18} "
            f"{access.rpc:<34} {access.outcome:<10} {access.what}"
        )
    print(f"{len(rows)} entries (newest first)")
    return 0


def _cmd_patient_token(args: argparse.Namespace) -> int:
    from mutualrec.identity import parse_identity, patient_key
    from mutualrec.security.patient_tokens import mint_patient_token

    settings = load_settings()
    document = parse_identity(args.id_type, args.patient_id, args.country)
    issued = mint_patient_token(
        settings.token_secret,
        patient_key(document, settings.patient_key_secret),
        dt.timedelta(seconds=args.ttl),
    )
    print(issued.token)
    print(f"valid until {issued.expires_at.isoformat()}", file=sys.stderr)
    return 0


def _token(args: argparse.Namespace) -> str:
    """The credential of a patient's (or a share link's) command, in any form the CLI prints;
    for `download` also a hospital's API key (opening a study its check recognized)."""
    from mutualrec.client.links import credential

    hospital_key = getattr(args, "key", None)
    token = args.token or hospital_key or os.environ.get("MUTUALREC_TOKEN", "")
    if not token and hasattr(args, "key"):
        token = os.environ.get("MUTUALREC_API_KEY", "")
    if not token:
        raise ConfigError("give a patient token or share token with --token or MUTUALREC_TOKEN")
    return credential(str(token))


def _study_line(study: Any) -> str:
    valid = [r.item_code for r in study.recognition if r.within_validity]
    recognized = f"  recognizable as {', '.join(valid)}" if valid else ""
    return (
        f"{study.study_date} {study.study_time[:5]:<5} {','.join(study.modalities):<6} "
        f"{','.join(study.body_parts) or '-':<12} {study.institution_name} "
        f"({study.series_count} series, {study.instance_count} images){recognized}\n"
        f"    {study.study_instance_uid}  {study.description}"
    )


def _save_thumbnails(channel: grpc.Channel, token: str, study_uid: str, folder: Path) -> int:
    from mutualrec.client.upload import auth_metadata
    from mutualrec.v1 import imaging_pb2, imaging_pb2_grpc

    stub = imaging_pb2_grpc.ImagingServiceStub(channel)
    metadata = auth_metadata(token)
    study = stub.GetStudy(
        imaging_pb2.GetStudyRequest(study_instance_uid=study_uid), metadata=metadata
    )
    uid = study.study.study_instance_uid
    written = 0
    for series in study.series:
        thumbnail = stub.GetThumbnail(
            imaging_pb2.GetThumbnailRequest(
                study_instance_uid=uid, series_instance_uid=series.series_instance_uid
            ),
            metadata=metadata,
        )
        target = folder / uid / f"{series.series_instance_uid}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(thumbnail.data)
        written += 1
    return written


def _cmd_history(args: argparse.Namespace) -> int:
    from google.protobuf.json_format import MessageToDict

    from mutualrec.client.imaging import list_all_studies
    from mutualrec.v1 import imaging_pb2

    token = _token(args)
    request = imaging_pb2.ListStudiesRequest(
        page_size=args.page_size,
        modality=args.modality,
        from_date=args.from_date,
        to_date=args.to_date,
        institution_code=args.institution,
    )
    with _channel(args) as channel:
        studies = list(list_all_studies(channel, token, request))
        thumbnails = 0
        if args.thumbnails:
            for study in studies:
                thumbnails += _save_thumbnails(
                    channel, token, study.study_instance_uid, Path(args.thumbnails)
                )
    if args.json:
        rows = [MessageToDict(s, preserving_proto_field_name=True) for s in studies]
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        for study in studies:
            print(_study_line(study))
        print(f"{len(studies)} studies")
    if args.thumbnails:
        print(f"{thumbnails} thumbnails written under {args.thumbnails}", file=sys.stderr)
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from mutualrec.client.imaging import download_study
    from mutualrec.client.links import study_uid

    with _channel(args) as channel:
        saved = download_study(
            channel, _token(args), study_uid(args.study_uid), Path(args.out), args.series
        )
    total = sum(f.size_bytes for f in saved)
    print(f"{len(saved)} files, {total} bytes, checked, under {args.out}")
    return 0


def _cmd_share(args: argparse.Namespace) -> int:
    from mutualrec.client.links import study_uid
    from mutualrec.client.upload import auth_metadata
    from mutualrec.v1 import imaging_pb2, imaging_pb2_grpc

    expire = args.until or (dt.datetime.now(dt.UTC) + dt.timedelta(days=args.days)).isoformat()
    with _channel(args) as channel:
        response = imaging_pb2_grpc.ImagingServiceStub(channel).CreateShareLink(
            imaging_pb2.CreateShareLinkRequest(
                study_instance_uid=study_uid(args.study_uid), expire_time=expire, note=args.note
            ),
            metadata=auth_metadata(_token(args)),
        )
    if args.json:
        _print_message(response)
    else:
        print(response.uri)
        print(
            f"link {response.link.link_id} until {response.link.expire_time}; "
            "the token is shown only now",
            file=sys.stderr,
        )
    return 0


def _cmd_share_links(args: argparse.Namespace) -> int:
    from mutualrec.client.upload import auth_metadata
    from mutualrec.v1 import imaging_pb2, imaging_pb2_grpc

    with _channel(args) as channel:
        response = imaging_pb2_grpc.ImagingServiceStub(channel).ListShareLinks(
            imaging_pb2.ListShareLinksRequest(study_instance_uid=args.study),
            metadata=auth_metadata(_token(args)),
        )
    if args.json:
        _print_message(response)
        return 0
    for link in response.links:
        state = imaging_pb2.ShareLinkState.Name(link.state).removeprefix("SHARE_LINK_")
        print(
            f"{link.link_id} {state:<8} until {link.expire_time} opened {link.opening_count}x "
            f"study {link.study_instance_uid} {link.note}"
        )
        for opening in link.openings:
            print(f"    {opening.time} {opening.rpc} from {opening.peer}")
    return 0


def _cmd_revoke_share(args: argparse.Namespace) -> int:
    from mutualrec.client.upload import auth_metadata
    from mutualrec.v1 import imaging_pb2, imaging_pb2_grpc

    with _channel(args) as channel:
        link = imaging_pb2_grpc.ImagingServiceStub(channel).RevokeShareLink(
            imaging_pb2.RevokeShareLinkRequest(link_id=args.link_id),
            metadata=auth_metadata(_token(args)),
        )
    print(f"{link.link_id} revoked at {link.revoke_time}")
    return 0


_REPORT_GROUPS = {
    "district": "GROUP_BY_DISTRICT",
    "asking-institution": "GROUP_BY_ASKING_INSTITUTION",
    "issuing-institution": "GROUP_BY_ISSUING_INSTITUTION",
    "pair": "GROUP_BY_ISSUER_ASKER_PAIR",
    "item": "GROUP_BY_ITEM",
    "category": "GROUP_BY_CATEGORY",
}


def _cmd_report(args: argparse.Namespace) -> int:
    from mutualrec.client.dates import region_today, report_date
    from mutualrec.v1 import statistics_pb2, statistics_pb2_grpc

    today = region_today()
    request = statistics_pb2.ReportRequest(
        from_date=report_date(args.from_date, today),
        to_date=report_date(args.to_date, today),
        granularity=f"GRANULARITY_{args.granularity.upper()}",
        group_by=_REPORT_GROUPS[args.by],
    )
    if args.format == "png" and not args.out:
        raise ValueError("--format png needs --out FILE.png")
    if args.format != "png" and args.out:
        raise ValueError("--out goes with --format png")
    from mutualrec.client.upload import auth_metadata

    metadata = auth_metadata(_api_key(args))
    with _channel(args) as channel:
        stub = statistics_pb2_grpc.StatisticsServiceStub(channel)
        if args.format == "csv":
            for chunk in stub.ExportReport(request, metadata=metadata, timeout=300):
                sys.stdout.write(chunk.data.decode("utf-8"))
            return 0
        report = stub.GetSavingsReport(request, metadata=metadata, timeout=300)
    if args.format == "png":
        # matplotlib only here: importing it costs the other commands' start-up time.
        from mutualrec.client.report_chart import write_chart

        chart = write_chart(report, Path(args.out))
        print(args.out)
        for drawn, named in chart.replaced_labels:
            print(f"    {drawn}: {named}")
        return 0
    from mutualrec.client.table import LEFT, RIGHT, render

    def cells(row: statistics_pb2.ReportRow, period: str, group: str) -> tuple[str, ...]:
        return (
            period,
            group,
            str(row.checks),
            str(row.items_checked),
            str(row.items_recognizable),
            str(row.accepted),
            str(row.declined),
            row.recognition_rate or "-",
            row.saving,
        )

    rows = [
        cells(
            row,
            row.period_start
            if row.period_start == row.period_end
            else f"{row.period_start}..{row.period_end}",
            row.group_label or row.group_key or "-",
        )
        for row in report.rows
    ]
    header = ("period", "group", "checks", "items", "recog.", "acc.", "decl.", "rate", "saving")
    total = cells(report.totals, f"{report.from_date}..{report.to_date}", "total")
    for line in render(header, rows, (LEFT, LEFT, *[RIGHT] * 7), footer=[total]):
        print(line)
    if not report.rows:
        print(f"no checks from {report.from_date} to {report.to_date}")
    if report.suppressed_rows:
        print(
            f"{report.suppressed_rows} rows of groups under {report.min_group_size} checks left out"
        )
    return 0


def _large_messages() -> list[tuple[str, int]]:
    # The server sets the real limit (MUTUALREC_MAX_FHIR_MIB) and answers precisely beyond it.
    return [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


_SERVER_HELP = f"HOST:PORT of the server (default: MUTUALREC_SERVER, else {DEFAULT_SERVER})"
_ID_TYPES = [
    "RESIDENT_ID_CARD",
    "PASSPORT",
    "E_HEALTH_CARD",
    "MAINLAND_TRAVEL_PERMIT",
    "FOREIGN_PERMANENT_RESIDENT_ID",
]


def _server_address(text: str) -> str:
    """``--server``: host:port. Without a port gRPC would quietly dial 443, so it is an error."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or host.endswith(":") or not port.isdigit():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:50051, [::1]:50051)"
        )
    if not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"port {port} of {text!r} is not 1 to 65535")
    return text.strip()


def _sub(group: Any, name: str, help: str) -> argparse.ArgumentParser:
    """A (sub)command with its one-line description and an example in its --help."""
    parser: argparse.ArgumentParser = group.add_parser(name, help=help)
    document(parser, name, help)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``mutualrec`` command."""
    parser = argparse.ArgumentParser(
        prog="mutualrec",
        description="City-wide mutual recognition of medical exam and lab results: the server, "
        "its administration, and the clients of hospitals, patients and regulators.",
        epilog="new here? run `mutualrec serve` (or `make serve`), then `mutualrec demo` in "
        "another terminal; `mutualrec COMMAND --help` shows a command's options and an example",
    )
    parser.add_argument("--version", action="version", version=f"mutualrec {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _sub(commands, "serve", help="run the gRPC server").set_defaults(run=_cmd_serve)
    demo = _sub(
        commands,
        "demo",
        help="load a working demo into a running server: hospitals, studies dated relative to "
        "today, lab results, checks and decisions",
    )
    demo.add_argument(
        "--samples",
        metavar="DIR",
        help="the sample studies (default: ./dicom_samples, else the checkout's)",
    )
    demo.add_argument(
        "--server",
        type=_server_address,
        default=_default_server(),
        help=_SERVER_HELP,
    )
    demo.set_defaults(run=_cmd_demo)

    db = _sub(commands, "db", help="database schema").add_subparsers(dest="db", required=True)
    _sub(db, "upgrade", help="apply migrations").set_defaults(run=_cmd_db_upgrade)
    _sub(db, "current", help="show the schema revision").set_defaults(run=_cmd_db_current)

    admin = _sub(commands, "admin", help="administration").add_subparsers(
        dest="admin", required=True
    )
    add = _sub(admin, "add-institution", help="register an institution")
    add.add_argument("--code", required=True)
    add.add_argument("--name", required=True)
    add.add_argument("--district", required=True)
    add.add_argument("--level", required=True, choices=["tertiary", "secondary", "primary"])
    add.add_argument("--city", default="chongqing", help="reached by city-scope qualifications")
    add.add_argument(
        "--region", default="chengdu-chongqing", help="reached by region-scope qualifications"
    )
    add.set_defaults(run=_cmd_add_institution)
    issue = _sub(admin, "issue-key", help="make an API key for an institution, or a regulator key")
    issue.add_argument("--institution", metavar="CODE", help="the hospital (hospital keys)")
    issue.add_argument(
        "--role",
        default="hospital",
        choices=["hospital", "regulator", "admin"],
        help="regulator keys read aggregate statistics only; admin keys mint patient tokens "
        "(IdentityService); neither names an institution",
    )
    issue.set_defaults(run=_cmd_issue_key)
    revoke = _sub(admin, "revoke-key", help="revoke an API key by its id")
    revoke.add_argument("key_id")
    revoke.set_defaults(run=_cmd_revoke_key)
    rotate = _sub(
        admin,
        "rotate-key",
        help="issue a key's successor (same role and institution); the old key keeps working "
        "for --grace-hours, then stops",
    )
    rotate.add_argument("key_id")
    rotate.add_argument("--grace-hours", type=float, default=24.0)
    rotate.set_defaults(run=_cmd_rotate_key)

    load = _sub(admin, "load-catalog", help="record a catalog file as a new version")
    load.add_argument("file", metavar="FILE", help="catalog CSV")
    load.add_argument("--version", required=True, help="the version it is cited as, e.g. 2026.2")
    load.set_defaults(run=_cmd_load_catalog)
    reindex = _sub(
        admin,
        "reindex",
        help="re-derive every held lab result's catalog items (online; resumes if interrupted)",
    )
    reindex.add_argument("--catalog-version", help="default: the current catalog")
    reindex.add_argument("--batch", type=int, default=20_000, help="results per transaction")
    reindex.set_defaults(run=_cmd_reindex)
    _sub(admin, "catalog-versions", help="list the recorded catalog versions").set_defaults(
        run=_cmd_catalog_versions
    )
    mappings = _sub(
        admin, "load-mappings", help="replace an institution's local code -> catalog item mapping"
    )
    mappings.add_argument("--institution", required=True, metavar="CODE")
    mappings.add_argument("file", metavar="FILE", help="CSV: local_code,item_codes,description")
    mappings.set_defaults(run=_cmd_load_mappings)
    qualify = _sub(
        admin, "add-qualification", help="record an institution's recognition (HR) qualification"
    )
    qualify.add_argument("--institution", required=True, metavar="CODE")
    what = qualify.add_mutually_exclusive_group(required=True)
    what.add_argument("--item", metavar="CODE", help="one catalog item")
    what.add_argument("--category", choices=["lab", "imaging"], help="every item of a category")
    qualify.add_argument("--scope", required=True, choices=["city", "region", "national"])
    qualify.add_argument(
        "--from",
        dest="valid_from",
        required=True,
        metavar="WHEN",
        help="ISO date or date-time; without a zone, Asia/Shanghai",
    )
    qualify.add_argument(
        "--until", metavar="WHEN", help="end, exclusive (default: held until further notice)"
    )
    qualify.set_defaults(run=_cmd_add_qualification)
    policy = _sub(
        admin, "load-policy", help="record the region's policy file as a new version, in force"
    )
    policy.add_argument("file", metavar="FILE", help="policy TOML (see matching/data)")
    policy.set_defaults(run=_cmd_load_policy)
    review = _sub(
        admin,
        "review-declared-item",
        help="resolve a study whose declared item contradicts its images",
    )
    review.add_argument("study", metavar="STUDY_INSTANCE_UID")
    verdict = review.add_mutually_exclusive_group(required=True)
    verdict.add_argument(
        "--confirm", action="store_true", help="the declared item stands: recognize it"
    )
    verdict.add_argument(
        "--overrule",
        action="store_true",
        help="the images' header stands: recognize the items it shows",
    )
    review.set_defaults(run=_cmd_review_declared_item)
    prices = _sub(admin, "load-prices", help="replace an institution's own price list")
    prices.add_argument("--institution", required=True, metavar="CODE")
    prices.add_argument("file", metavar="FILE", help="CSV: item_code,price_cny")
    prices.set_defaults(run=_cmd_load_prices)

    def tls_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--ca", help="the server's CA, PEM: connect with TLS (default: MUTUALREC_SERVER_CA)"
        )

    def client_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--server",
            type=_server_address,
            default=_default_server(),
            help=_SERVER_HELP,
        )
        sub.add_argument("--key", help="API key (default: MUTUALREC_API_KEY)")
        tls_options(sub)
        sub.add_argument(
            "--cert",
            help="the hospital's client certificate, PEM, for mTLS (MUTUALREC_CLIENT_CERT)",
        )
        sub.add_argument("--cert-key", help="its private key, PEM (MUTUALREC_CLIENT_KEY)")

    def token_options(sub: argparse.ArgumentParser, holder: str = "patient token") -> None:
        sub.add_argument(
            "--server",
            type=_server_address,
            default=_default_server(),
            help=_SERVER_HELP,
        )
        sub.add_argument(
            "--token",
            help=f"{holder}, or the link `share` printed (default: MUTUALREC_TOKEN)",
        )
        tls_options(sub)

    up = _sub(commands, "upload", help="upload DICOM files or folders as one study")
    up.add_argument("paths", nargs="+", metavar="PATH")
    up.add_argument("--patient-id", required=True, help="identity document number")
    up.add_argument("--id-type", default="RESIDENT_ID_CARD", choices=_ID_TYPES)
    up.add_argument("--country", default="", help="issuing country (ISO alpha-3), passports")
    up.add_argument("--accession", default="", help="the hospital's accession number")
    up.add_argument("--item", default="", help="catalog item code the RIS performed")
    up.add_argument("--json", action="store_true", help="print the outcomes as JSON")
    client_options(up)
    up.set_defaults(run=_cmd_upload)

    status = _sub(commands, "study-status", help="which instances the region holds")
    status.add_argument("study_uid", help="StudyInstanceUID, or a mutualrec://study/ link")
    status.add_argument("--json", action="store_true", help="print the reply as JSON")
    client_options(status)
    status.set_defaults(run=_cmd_study_status)

    fhir = _sub(
        commands,
        "submit-fhir",
        help="submit lab results: FHIR Observations or batch/transaction Bundles",
    )
    fhir.add_argument("files", nargs="+", metavar="FILE")
    fhir.add_argument("--fhir-version", choices=["R4", "R5"], default="R4")
    fhir.add_argument("--json", action="store_true", help="print the outcomes as JSON")
    client_options(fhir)
    fhir.set_defaults(run=_cmd_submit_fhir)

    check = _sub(
        commands,
        "check",
        help="which ordered items the patient already holds a recognizable result of",
    )
    check.add_argument("items", nargs="+", metavar="ITEM", help="catalog, LOINC or local codes")
    check.add_argument("--patient-id", required=True, help="identity document number")
    check.add_argument("--id-type", default="RESIDENT_ID_CARD", choices=_ID_TYPES)
    check.add_argument("--country", default="", help="issuing country (ISO alpha-3), passports")
    check.add_argument("--order-id", default="", help="the HIS's order number, for the record")
    check.add_argument("--department", default="")
    check.add_argument(
        "--lang", default="", help="language of the reasons, Accept-Language style (default zh)"
    )
    check.add_argument("--json", action="store_true", help="print the reply as JSON")
    client_options(check)
    check.set_defaults(run=_cmd_check)

    from mutualrec.client.recognition import DECLINE_REASONS

    decide = _sub(commands, "decide", help="record the doctor's decision on a check line")
    decide.add_argument("check_id")
    decide.add_argument("item", metavar="ITEM", help="the line's catalog item code, or its number")
    decide.add_argument("decision", choices=["accept", "decline"])
    decide.add_argument(
        "--reason", choices=DECLINE_REASONS, help="why the doctor declines (with decline)"
    )
    decide.add_argument("--text", default="", help="the reason in words (needed for other)")
    decide.add_argument("--json", action="store_true", help="print the reply as JSON")
    client_options(decide)
    decide.set_defaults(run=_cmd_decide)

    swept = _sub(
        admin,
        "sweep",
        help="remove blobs no index row refers to (left by crashes between blob and row)",
    )
    swept.add_argument(
        "--grace-minutes",
        type=float,
        default=60,
        help="never touch objects written more recently (an upload may not have committed yet)",
    )
    swept.add_argument("--dry-run", action="store_true", help="count, remove nothing")
    swept.add_argument("--verbose", action="store_true", help="print each key removed")
    swept.set_defaults(run=_cmd_sweep)

    dev_ca = _sub(
        admin, "dev-ca", help="a development CA for trying TLS and mTLS (ca.pem, ca.key in --out)"
    )
    dev_ca.add_argument("--out", required=True, metavar="DIR")
    dev_ca.add_argument("--days", type=int, default=365)
    dev_ca.set_defaults(run=_cmd_dev_ca)
    dev_cert = _sub(
        admin,
        "dev-cert",
        help="a server certificate, or a hospital's client certificate, signed by the dev CA",
    )
    dev_cert.add_argument("--ca", required=True, metavar="DIR", help="where dev-ca wrote the CA")
    dev_cert.add_argument("--out", required=True, metavar="DIR")
    dev_cert.add_argument(
        "--server-host", nargs="+", metavar="HOST", help="DNS names or IPs of the server"
    )
    dev_cert.add_argument(
        "--institution", metavar="CODE", help="the hospital the client certificate names"
    )
    dev_cert.add_argument("--days", type=int, default=365)
    dev_cert.set_defaults(run=_cmd_dev_cert)

    rebuilt = _sub(
        admin,
        "rebuild-statistics",
        help="tally every day again from the record of checks and decisions (service stopped)",
    )
    rebuilt.set_defaults(run=_cmd_rebuild_statistics)

    token = _sub(
        admin,
        "patient-token",
        help="mint a short-lived patient token (stand-in for the identity provider)",
    )
    token.add_argument("--patient-id", required=True, help="identity document number")
    token.add_argument("--id-type", default="RESIDENT_ID_CARD", choices=_ID_TYPES)
    token.add_argument("--country", default="", help="issuing country (ISO alpha-3), passports")
    token.add_argument("--ttl", type=int, default=3600, help="seconds, 60 to 86400")
    token.set_defaults(run=_cmd_patient_token)

    audit = _sub(
        commands,
        "audit",
        help="who read or wrote a patient's data (the audit trail), or --verify it",
    )
    audit.add_argument("--patient-id", help="identity document number")
    audit.add_argument("--id-type", default="RESIDENT_ID_CARD", choices=_ID_TYPES)
    audit.add_argument("--country", default="", help="issuing country (ISO alpha-3), passports")
    audit.add_argument("--limit", type=int, default=100, help="newest entries shown")
    audit.add_argument("--json", action="store_true", help="print the entries as JSON")
    audit.add_argument(
        "--verify", action="store_true", help="recompute every hash chain and report breaks"
    )
    audit.set_defaults(run=_cmd_audit)

    history = _sub(
        commands, "history", help="a patient's imaging studies across all hospitals (patient token)"
    )
    history.add_argument("--modality", default="", help="e.g. CT")
    history.add_argument("--from", dest="from_date", default="", metavar="YYYY-MM-DD")
    history.add_argument("--to", dest="to_date", default="", metavar="YYYY-MM-DD")
    history.add_argument("--institution", default="", metavar="CODE")
    history.add_argument("--page-size", type=int, default=50, help="studies per call")
    history.add_argument(
        "--thumbnails",
        metavar="DIR",
        help="also write each series' thumbnail as DIR/STUDY/SERIES.png",
    )
    history.add_argument("--json", action="store_true", help="print the studies as JSON")
    token_options(history)
    history.set_defaults(run=_cmd_history)

    download = _sub(
        commands,
        "download",
        help="save a study's DICOM files (patient token, share link, or a hospital's key)",
    )
    download.add_argument(
        "study_uid",
        nargs="?",
        default="",
        help="StudyInstanceUID or the open_url a check printed; empty with a share token",
    )
    download.add_argument(
        "--key",
        help="a hospital's API key: open a study its check recognized (default: "
        "MUTUALREC_API_KEY when no token is given)",
    )
    download.add_argument("--out", required=True, metavar="DIR")
    download.add_argument("--series", default="", help="one series only")
    token_options(download, "patient or share token")
    download.set_defaults(run=_cmd_download)

    share = _sub(commands, "share", help="make a read-only link to one study for a doctor")
    share.add_argument("study_uid", help="StudyInstanceUID, or a mutualrec://study/ link")
    share.add_argument("--days", type=float, default=7, help="how long it works (default 7)")
    share.add_argument("--until", default="", help="or an exact ISO 8601 expiry with offset")
    share.add_argument("--note", default="", help="for your own list, e.g. the doctor's name")
    share.add_argument("--json", action="store_true", help="print the reply as JSON")
    token_options(share)
    share.set_defaults(run=_cmd_share)

    links = _sub(commands, "share-links", help="your share links and who opened them")
    links.add_argument("--study", default="", help="links of one study only")
    links.add_argument("--json", action="store_true", help="print the reply as JSON")
    token_options(links)
    links.set_defaults(run=_cmd_share_links)

    revoke_share = _sub(commands, "revoke-share", help="close a share link at once")
    revoke_share.add_argument("link_id")
    token_options(revoke_share)
    revoke_share.set_defaults(run=_cmd_revoke_share)

    report = _sub(
        commands,
        "report",
        help="savings statistics (regulator key): a table in the terminal, CSV, or a PNG chart",
    )
    report.add_argument(
        "--from",
        dest="from_date",
        required=True,
        metavar="DATE",
        help="first day: YYYY-MM-DD, today, or today-N (N days ago, Asia/Shanghai)",
    )
    report.add_argument(
        "--to", dest="to_date", default="today", metavar="DATE", help="last day (default: today)"
    )
    report.add_argument("--by", required=True, choices=list(_REPORT_GROUPS))
    report.add_argument("--granularity", default="month", choices=["day", "week", "month"])
    report.add_argument("--format", default="table", choices=["table", "csv", "png"])
    report.add_argument(
        "--out",
        metavar="FILE.png",
        help="where --format png writes the chart (savings and recognition rate per period, "
        "top 8 groups by saving and the rest as one line)",
    )
    client_options(report)
    report.set_defaults(run=_cmd_report)
    return parser


def _default_server() -> str:
    return os.environ.get("MUTUALREC_SERVER", DEFAULT_SERVER)


def _stdout_closed() -> int:
    """The reader of our output went away (`| head`): stop quietly, as Unix tools do."""
    # Python would flush stdout again at exit and print the same error: point it at devnull.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + 13  # killed by SIGPIPE, as the shell reports it


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mutualrec`` console script."""
    args = build_parser().parse_args(argv)
    try:
        status = _run(args)
        # Flushed here, not at exit: a closed pipe is then reported by the except below.
        sys.stdout.flush()
    except BrokenPipeError:
        return _stdout_closed()
    return status


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.run(args))
    except (ConfigError, SchemaOutOfDate, FileNotFoundError, ValueError, LookupError) as exc:
        print(f"mutualrec: {exc}", file=sys.stderr)
        return 2
    except grpc.RpcError as exc:
        from mutualrec.client.errors import refusal

        print(f"mutualrec: {exc.code().name}: {exc.details()}", file=sys.stderr)
        for violation in refusal(exc)["violations"]:
            print(f"    {violation['field']}: {violation['description']}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
