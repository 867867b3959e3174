"""Administrators' commands (`mutualrec admin ...`, `mutualrec audit`): institutions, keys,
reference data, upkeep, development certificates, patient tokens, the audit trail.

They run on the index the settings name, through the administration services; this module only
reads flags and prints results.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mutualrec.cli.options import identity_options, sub
from mutualrec.config import load_settings
from mutualrec.violations import Rejected, Violation

if TYPE_CHECKING:
    from mutualrec.services.administration import Administration

# Servers poll for administrators' changes once a second (mutualrec.change_watch).
IN_EFFECT = "in effect on every running server within about a second"


def register(commands: Any) -> None:
    """Add ``admin`` and its subcommands, and ``audit``, to the top-level commands."""
    admin = sub(commands, "admin", help="administration").add_subparsers(
        dest="admin", required=True
    )
    _register_institutions(admin)
    _register_reference_data(admin)
    _register_upkeep(admin)
    _register_audit(commands)


def _register_institutions(admin: Any) -> None:
    add = sub(admin, "add-institution", help="register an institution")
    add.add_argument("--code", required=True)
    add.add_argument("--name", required=True)
    add.add_argument("--district", required=True)
    add.add_argument("--level", required=True, choices=["tertiary", "secondary", "primary"])
    add.add_argument("--city", default="chongqing", help="reached by city-scope qualifications")
    add.add_argument(
        "--region", default="chengdu-chongqing", help="reached by region-scope qualifications"
    )
    add.set_defaults(run=_add_institution)
    issue = sub(admin, "issue-key", help="make an API key for an institution, or a regulator key")
    issue.add_argument("--institution", metavar="CODE", help="the hospital (hospital keys)")
    issue.add_argument(
        "--role",
        default="hospital",
        choices=["hospital", "regulator", "admin"],
        help="regulator keys read aggregate statistics only; admin keys mint patient tokens "
        "(IdentityService); neither names an institution",
    )
    issue.set_defaults(run=_issue_key)
    revoke = sub(admin, "revoke-key", help="revoke an API key by its id")
    revoke.add_argument("key_id")
    revoke.set_defaults(run=_revoke_key)
    rotate = sub(
        admin,
        "rotate-key",
        help="issue a key's successor (same role and institution); the old key keeps working "
        "for --grace-hours, then stops",
    )
    rotate.add_argument("key_id")
    rotate.add_argument("--grace-hours", type=float, default=24.0)
    rotate.set_defaults(run=_rotate_key)
    peer = sub(
        admin,
        "add-dicom-peer",
        help="allow a hospital PACS to send over DICOM (C-STORE) by its calling AE title",
    )
    peer.add_argument("--institution", required=True, metavar="CODE")
    peer.add_argument("--ae-title", required=True, metavar="TITLE", help="its calling AE title")
    peer.add_argument(
        "--address", metavar="IP", default="", help="accept the title only from this address"
    )
    peer.set_defaults(run=_add_dicom_peer)
    sub(admin, "dicom-peers", help="list the registered DICOM peers").set_defaults(run=_dicom_peers)
    forget = sub(admin, "remove-dicom-peer", help="stop accepting a calling AE title")
    forget.add_argument("ae_title", metavar="TITLE")
    forget.set_defaults(run=_remove_dicom_peer)
    cds = sub(
        admin,
        "add-cds-client",
        help="allow an EHR to call the CDS Hooks services: the iss of its JWTs and its public "
        "keys, for an institution",
    )
    cds.add_argument("--institution", required=True, metavar="CODE")
    cds.add_argument(
        "--issuer", required=True, metavar="URL", help="the iss claim of the EHR's JWTs"
    )
    cds.add_argument(
        "--jwks",
        required=True,
        metavar="FILE",
        help="the EHR's public keys: a JWKS (JSON) or a PEM public key file",
    )
    cds.set_defaults(run=_add_cds_client)
    sub(admin, "cds-clients", help="list the registered CDS clients (EHRs)").set_defaults(
        run=_cds_clients
    )
    drop = sub(admin, "remove-cds-client", help="stop accepting an EHR's JWTs")
    drop.add_argument("issuer", metavar="URL")
    drop.set_defaults(run=_remove_cds_client)


def _register_reference_data(admin: Any) -> None:
    load = sub(admin, "load-catalog", help="record a catalog file as a new version")
    load.add_argument("file", metavar="FILE", help="catalog CSV")
    load.add_argument("--version", required=True, help="the version it is cited as, e.g. 2026.2")
    load.set_defaults(run=_load_catalog)
    reindex = sub(
        admin,
        "reindex",
        help="re-derive every held lab result's catalog items (online; resumes if interrupted)",
    )
    reindex.add_argument("--catalog-version", help="default: the current catalog")
    reindex.add_argument("--batch", type=int, default=20_000, help="results per transaction")
    reindex.set_defaults(run=_reindex)
    sub(admin, "catalog-versions", help="list the recorded catalog versions").set_defaults(
        run=_catalog_versions
    )
    mappings = sub(
        admin, "load-mappings", help="replace an institution's local code -> catalog item mapping"
    )
    mappings.add_argument("--institution", required=True, metavar="CODE")
    mappings.add_argument("file", metavar="FILE", help="CSV: local_code,item_codes,description")
    mappings.set_defaults(run=_load_mappings)
    qualify = sub(
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
    qualify.set_defaults(run=_add_qualification)
    policy = sub(
        admin, "load-policy", help="record the region's policy file as a new version, in force"
    )
    policy.add_argument("file", metavar="FILE", help="policy TOML (see matching/data)")
    policy.set_defaults(run=_load_policy)
    review = sub(
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
    review.set_defaults(run=_review_declared_item)
    prices = sub(admin, "load-prices", help="replace an institution's own price list")
    prices.add_argument("--institution", required=True, metavar="CODE")
    prices.add_argument("file", metavar="FILE", help="CSV: item_code,price_cny")
    prices.set_defaults(run=_load_prices)


def _register_upkeep(admin: Any) -> None:
    swept = sub(
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
    swept.set_defaults(run=_sweep)

    dev_ca = sub(
        admin, "dev-ca", help="a development CA for trying TLS and mTLS (ca.pem, ca.key in --out)"
    )
    dev_ca.add_argument("--out", required=True, metavar="DIR")
    dev_ca.add_argument("--days", type=int, default=365)
    dev_ca.set_defaults(run=_dev_ca)
    dev_cert = sub(
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
    dev_cert.set_defaults(run=_dev_cert)

    rebuilt = sub(
        admin,
        "rebuild-statistics",
        help="tally every day again from the record of checks and decisions (service stopped)",
    )
    rebuilt.set_defaults(run=_rebuild_statistics)

    token = sub(
        admin,
        "patient-token",
        help="mint a short-lived patient token (stand-in for the identity provider)",
    )
    identity_options(token, required=True)
    token.add_argument("--ttl", type=int, default=3600, help="seconds, 60 to 86400")
    token.set_defaults(run=_patient_token)


def _register_audit(commands: Any) -> None:
    audit = sub(
        commands,
        "audit",
        help="who read or wrote a patient's data (the audit trail), or --verify it",
    )
    identity_options(audit, required=False)
    audit.add_argument("--limit", type=int, default=100, help="newest entries shown")
    audit.add_argument("--json", action="store_true", help="print the entries as JSON")
    audit.add_argument(
        "--verify", action="store_true", help="recompute every hash chain and report breaks"
    )
    audit.set_defaults(run=_audit)


def _administration() -> Administration:
    # Imported here: the index's code costs the other audiences' commands start-up time.
    from mutualrec.services.administration import Administration

    return Administration(load_settings())


def _read_text(name: str) -> str:
    """A file's text as it is on disk (no newline translation): its SHA-256 is the file's."""
    data = Path(name).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{name} is not UTF-8 text (byte {exc.start})") from None


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


def _add_institution(args: argparse.Namespace) -> int:
    from mutualrec.services.institutions import NewInstitution

    institution = _administration().institutions.register(
        NewInstitution(
            args.code, args.name, args.district, args.level, city=args.city, region=args.region
        )
    )
    print(f"institution {institution.code} ({institution.name}) added")
    return 0


def _issue_key(args: argparse.Namespace) -> int:
    from mutualrec.security.access import HOSPITAL

    if args.role != HOSPITAL:
        if args.institution:
            raise ValueError(f"a {args.role} key belongs to no institution: drop --institution")
        token = _administration().keys.issue(args.role)
    elif not args.institution:
        raise ValueError("a hospital key needs --institution CODE")
    else:
        token = _administration().keys.issue(HOSPITAL, args.institution)
    print(token)
    print("store this key now: the service keeps only its hash", file=sys.stderr)
    return 0


def _revoke_key(args: argparse.Namespace) -> int:
    revoked = _administration().keys.revoke(args.key_id)
    print("revoked" if revoked else "no live key with that id")
    if revoked:
        print(IN_EFFECT, file=sys.stderr)
    return 0 if revoked else 1


def _rotate_key(args: argparse.Namespace) -> int:
    rotation = _administration().keys.rotate(args.key_id, dt.timedelta(hours=args.grace_hours))
    print(rotation.token)
    print(
        f"store this key now: the service keeps only its hash; {args.key_id} keeps working "
        f"until {rotation.old_key_until.isoformat(timespec='seconds')}",
        file=sys.stderr,
    )
    return 0


def _add_dicom_peer(args: argparse.Namespace) -> int:
    peer = _administration().dicom_peers.add(args.institution, args.ae_title, args.address)
    where = f" from {peer.address}" if peer.address else " from any address"
    print(f"DICOM peer {peer.ae_title} added: stores for {peer.institution_code}{where}")
    return 0


def _dicom_peers(_args: argparse.Namespace) -> int:
    peers = _administration().dicom_peers.list()
    for peer in peers:
        print(f"{peer.ae_title:<16}  {peer.institution_code:<16}  {peer.address or 'any address'}")
    print(f"{len(peers)} DICOM peer(s)")
    return 0


def _remove_dicom_peer(args: argparse.Namespace) -> int:
    removed = _administration().dicom_peers.remove(args.ae_title)
    print("removed: new associations are refused" if removed else "no peer with that AE title")
    return 0 if removed else 1


def _add_cds_client(args: argparse.Namespace) -> int:
    client = _administration().cds_clients.add(args.institution, args.issuer, _read_text(args.jwks))
    print(
        f"CDS client {client.issuer} added: calls for {client.institution_code} "
        f"({client.key_count} key(s))"
    )
    return 0


def _cds_clients(_args: argparse.Namespace) -> int:
    clients = _administration().cds_clients.list()
    for client in clients:
        print(f"{client.issuer}  {client.institution_code}  {client.key_count} key(s)")
    print(f"{len(clients)} CDS client(s)")
    return 0


def _remove_cds_client(args: argparse.Namespace) -> int:
    removed = _administration().cds_clients.remove(args.issuer)
    print("removed: its next call is refused" if removed else "no CDS client with that issuer")
    return 0 if removed else 1


def _load_catalog(args: argparse.Namespace) -> int:
    loaded = _administration().catalogs.load_catalog(_read_text(args.file), args.version)
    catalog = loaded.catalog
    state = "loaded" if loaded.recorded else "was already loaded with this content"
    print(f"catalog {catalog.version} {state}: {len(catalog.items)} items, sha256 {catalog.sha256}")
    return 0


def _reindex(args: argparse.Namespace) -> int:
    from mutualrec.services.reindex import ReindexProgress

    def report(progress: ReindexProgress) -> None:
        print(
            f"{progress.results} results, +{progress.rows_added} -{progress.rows_removed} "
            f"index rows, up to lab result {progress.last_lab_result_id}",
            flush=True,
        )

    catalog, final = _administration().catalogs.reindex(args.catalog_version, args.batch, report)
    print(f"reindexed under catalog {catalog.version}: {final.results} results")
    return 0


def _catalog_versions(_args: argparse.Namespace) -> int:
    versions = _administration().catalogs.versions()
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


def _load_mappings(args: argparse.Namespace) -> int:
    text = _read_text(args.file)
    loaded = _administration().catalogs.load_code_mappings(args.institution, text)
    print(
        f"code mapping of {args.institution} loaded: {loaded.rows} local code(s), checked "
        f"against catalog {loaded.catalog_version}; it replaces the previous mapping"
    )
    print(IN_EFFECT, file=sys.stderr)
    return 0


def _load_policy(args: argparse.Namespace) -> int:
    loaded = _administration().catalogs.load_policy(_read_text(args.file))
    policy = loaded.policy
    state = "loaded, in force" if loaded.recorded else "was already loaded with this content"
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


def _review_declared_item(args: argparse.Namespace) -> int:
    uid = args.study.strip()
    study = _administration().catalogs.review_declared_item(uid, args.confirm)
    stands = "the declared item stands" if args.confirm else "the images' header stands"
    note = study.not_recognized_reason or "recognized"
    print(f"study {uid} ({study.performed_item_code or 'no declared item'}): {stands}; {note}")
    return 0


def _add_qualification(args: argparse.Namespace) -> int:
    from mutualrec.services.institutions import NewQualification

    violations: list[Violation] = []
    valid_from = _moment(args.valid_from, "--from", violations)
    valid_until = None if args.until is None else _moment(args.until, "--until", violations)
    if valid_from is None or violations:
        raise Rejected(f"the qualification has {len(violations)} problem(s)", violations)
    qualification_id = _administration().institutions.qualify(
        NewQualification(
            args.institution,
            item_code=args.item,
            category=args.category,
            scope=args.scope,
            valid_from=valid_from,
            valid_until=valid_until,
        )
    )
    what = f"item {args.item.strip().upper()}" if args.item else f"every {args.category} item"
    until = "further notice" if valid_until is None else valid_until.isoformat()
    print(
        f"qualification {qualification_id} added: {args.institution} holds {what}, "
        f"{args.scope} scope, from {valid_from.isoformat()} until {until}"
    )
    print(IN_EFFECT, file=sys.stderr)
    return 0


def _load_prices(args: argparse.Namespace) -> int:
    text = _read_text(args.file)
    loaded = _administration().catalogs.load_prices(args.institution, text)
    print(
        f"price list of {args.institution} loaded: {loaded.rows} item(s); "
        "it replaces the previous price list"
    )
    print(IN_EFFECT, file=sys.stderr)
    return 0


def _dev_ca(args: argparse.Namespace) -> int:
    from mutualrec.security.dev_ca import make_ca

    issued = make_ca(Path(args.out), days=args.days)
    print(f"development CA: {issued.cert} (key {issued.key}); not for real patients' data")
    return 0


def _dev_cert(args: argparse.Namespace) -> int:
    from mutualrec.security.dev_ca import make_client_cert, make_server_cert

    if bool(args.server_host) == bool(args.institution):
        raise ValueError("give either --server-host (a server certificate) or --institution")
    if args.server_host:
        issued = make_server_cert(Path(args.ca), Path(args.out), args.server_host, args.days)
    else:
        issued = make_client_cert(Path(args.ca), Path(args.out), args.institution, args.days)
    print(f"{issued.cert} (key {issued.key})")
    return 0


def _rebuild_statistics(_args: argparse.Namespace) -> int:
    days = _administration().maintenance.rebuild_statistics()
    print(f"tallied {days} days again from the record of checks and decisions")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    report = _administration().maintenance.sweep(
        dt.timedelta(minutes=args.grace_minutes), remove=not args.dry_run
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


def _audit(args: argparse.Namespace) -> int:
    from mutualrec.services.audit_review import PatientAccesses

    audit = _administration().audit
    if args.verify:
        check = audit.verify()
        for problem in check.problems:
            print(f"chain {problem.chain_id} entry {problem.seq}: {problem.problem}")
        print(f"{check.checked} entries checked, {len(check.problems)} problems")
        return 1 if check.problems else 0
    if not args.patient_id:
        raise ValueError("give --patient-id ID (whose accesses to list) or --verify")
    accesses = audit.accesses(
        PatientAccesses(args.id_type, args.patient_id, args.country, args.limit)
    )
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
                    for access in accesses
                ],
                indent=2,
                ensure_ascii=False,
            )
        )
        return 0
    for access in accesses:
        who = access.institution_code or access.credential
        print(
            f"{access.at.isoformat(timespec='seconds')} {access.role:<9} {who:<18} "
            f"{access.rpc:<34} {access.outcome:<10} {access.what}"
        )
    print(f"{len(accesses)} entries (newest first)")
    return 0


def _patient_token(args: argparse.Namespace) -> int:
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
