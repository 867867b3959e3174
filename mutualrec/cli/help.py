"""What `mutualrec COMMAND --help` shows beyond the options: an example per command, and for
`serve` the settings (environment variables) it reads."""

from __future__ import annotations

import argparse

# One example per (sub)command, by its name (names are unique across the command levels).
EXAMPLES: dict[str, str] = {
    "serve": "mutualrec serve                      # 127.0.0.1:50051, data in ./var",
    "demo": "mutualrec demo                       # with `mutualrec serve` running",
    "db": "mutualrec db upgrade",
    "upgrade": "MUTUALREC_DATABASE_URL=postgresql://postgres@127.0.0.1/mutualrec "
    "mutualrec db upgrade",
    "current": "mutualrec db current",
    "admin": "mutualrec admin add-institution --code H500103001 --name 'Yuzhong Demo Hospital' "
    "--district Yuzhong --level tertiary",
    "add-institution": "mutualrec admin add-institution --code H500103001 "
    "--name 'Yuzhong Demo Hospital' --district Yuzhong --level tertiary",
    "issue-key": "mutualrec admin issue-key --institution H500103001\n"
    "  mutualrec admin issue-key --role regulator",
    "revoke-key": "mutualrec admin revoke-key k_3f9a...",
    "rotate-key": "mutualrec admin rotate-key k_3f9a... --grace-hours 24",
    "load-catalog": "mutualrec admin load-catalog items-2026.2.csv --version 2026.2",
    "catalog-versions": "mutualrec admin catalog-versions",
    "reindex": "mutualrec admin reindex --catalog-version 2026.2",
    "load-policy": "mutualrec admin load-policy region-policy-2026.1.toml",
    "review-declared-item": "mutualrec admin review-declared-item 1.2.840.113619.2.1 --confirm",
    "load-mappings": "mutualrec admin load-mappings --institution H500103001 his-codes.csv",
    "add-qualification": "mutualrec admin add-qualification --institution H500103001 "
    "--category imaging --scope city --from 2024-01-01",
    "load-prices": "mutualrec admin load-prices --institution H500103001 prices.csv",
    "sweep": "mutualrec admin sweep --dry-run",
    "dev-ca": "mutualrec admin dev-ca --out pki/ca",
    "dev-cert": "mutualrec admin dev-cert --ca pki/ca --out pki/server "
    "--server-host localhost 127.0.0.1",
    "rebuild-statistics": "mutualrec admin rebuild-statistics     # with the service stopped",
    "patient-token": "mutualrec admin patient-token --patient-id 50010319680315109X --ttl 3600",
    "add-dicom-peer": "mutualrec admin add-dicom-peer --institution H500103001 "
    "--ae-title YUZHONG_PACS --address 10.20.0.15",
    "dicom-peers": "mutualrec admin dicom-peers",
    "remove-dicom-peer": "mutualrec admin remove-dicom-peer YUZHONG_PACS",
    "add-cds-client": "mutualrec admin add-cds-client --institution H500103001 "
    "--issuer https://ehr.yuzhong-hospital.cn --jwks ehr-public.jwks.json",
    "cds-clients": "mutualrec admin cds-clients",
    "remove-cds-client": "mutualrec admin remove-cds-client https://ehr.yuzhong-hospital.cn",
    "upload": "mutualrec upload --key $KEY --patient-id 50010319680315109X "
    "--item IMG-CT-CHEST-C dicom_samples/ct_chest_contrast_hosp_a",
    "study-status": "mutualrec study-status --key $KEY 1.2.826.0.1.3680043.8.498.4244...",
    "unlinked-studies": "mutualrec unlinked-studies --key $KEY",
    "link-patient": "mutualrec link-patient --key $KEY --patient-id 50010319680315109X A00012345",
    "submit-fhir": "mutualrec submit-fhir --key $KEY results.json",
    "check": "mutualrec check --key $KEY --patient-id 50010319680315109X LAB-K IMG-CT-CHEST",
    "decide": "mutualrec decide --key $KEY CHECK_ID IMG-CT-CHEST accept\n"
    "  mutualrec decide --key $KEY CHECK_ID LAB-K decline --reason condition-changed",
    "audit": "mutualrec audit --patient-id 50010319680315109X --limit 20",
    "history": "mutualrec history --token $MUTUALREC_TOKEN --modality CT",
    "download": "mutualrec download --token mutualrec://share/mrs_... --out film/\n"
    "  mutualrec download mutualrec://study/1.2.826... --key $KEY --out film/",
    "share": "mutualrec share 1.2.826.0.1.3680043.8.498.4244... --days 7 --note 'Dr Li'",
    "share-links": "mutualrec share-links",
    "revoke-share": "mutualrec revoke-share shl_...",
    "report": "mutualrec report --key $REGULATOR_KEY --from today-30 --to today --by district\n"
    "  mutualrec report --key $REGULATOR_KEY --from 2026-01-01 --to 2026-06-30 --by item "
    "--format png --out chart.png",
}

# (variable without the MUTUALREC_ prefix, default, meaning): the README's settings table, short.
SETTINGS: tuple[tuple[str, str, str], ...] = (
    ("LISTEN", "127.0.0.1:50051", "address to listen on (:0 picks a free port)"),
    ("DATA_DIR", "./var", "SQLite index, objects and the generated patient-key secret"),
    ("DATABASE_URL", "sqlite:///$DATA_DIR/index.sqlite3", "SQLAlchemy URL (postgresql://...)"),
    ("AUTO_MIGRATE", "true for SQLite", "apply migrations at start"),
    ("OBJECT_STORE", "file://$DATA_DIR/objects", "file:///path or s3://bucket"),
    ("S3_ENDPOINT", "", "host:port of the S3 service"),
    ("S3_ACCESS_KEY", "", "S3 access key"),
    ("S3_SECRET_KEY", "", "S3 secret key"),
    ("S3_SECURE", "true", "HTTPS to the S3 endpoint"),
    ("S3_REGION", "", "S3 region, if the service needs one"),
    ("TLS_CERT", "", "server certificate chain (PEM): serve TLS"),
    ("TLS_KEY", "", "server private key (PEM)"),
    ("TLS_CLIENT_CA", "", "CA of hospitals' client certificates: require mTLS"),
    ("PATIENT_KEY_SECRET", "$DATA_DIR/patient-key.secret", "HMAC secret of patient keys"),
    ("TOKEN_SECRET", "derived", "signs patient tokens and page tokens"),
    ("PRODUCTION", "false", "refuse generated or derived secrets"),
    ("FS_FSYNC", "true", "make objects durable (one barrier a batch) before indexing them"),
    ("MAX_INSTANCE_MIB", "4096", "largest accepted DICOM instance"),
    ("MAX_FHIR_MIB", "16", "largest accepted FHIR document"),
    ("SHUTDOWN_GRACE_SECONDS", "30", "time in-flight calls get after SIGTERM"),
    ("BLOCKING_WORKERS", "8", "threads for storage work (and database pool size)"),
    ("PARSE_WORKERS", "CPUs", "processes parsing FHIR, started on first use (0: none)"),
    ("PROCESSES", "1", "server processes sharing the port"),
    ("AUTH_CACHE_SECONDS", "30", "how long a verified API key is trusted"),
    ("MIN_GROUP_SIZE", "0", "statistics rows with fewer checks are left out"),
    ("MAX_CONCURRENT_REPORTS", "1", "statistics reports computed at once"),
    (
        "CHECK_BATCH",
        "64",
        "checks (and, apart, decisions) sharing one read and one record (1: one by one)",
    ),
    ("TALLY_INTERVAL_SECONDS", "5", "how often statistics deltas are folded"),
    ("RATE_LIMIT", "200", "calls per second per credential (0: off)"),
    ("RATE_BURST", "2 x rate", "calls a credential may make at once above its rate"),
    ("MAX_UPLOADS", "16", "open UploadStudy streams per credential (0: no limit)"),
    ("MAX_CONCURRENT_CALLS", "1000", "calls in progress per server process"),
    ("MAX_CALLS_PER_PEER", "calls / 4", "calls in progress from one client address (0: no cap)"),
    ("REQUEST_TIMEOUT_SECONDS", "10", "time a call may take to send its request"),
    ("AUTH_FAILURE_RATE", "rate / 10", "failed authentications per second per address"),
    ("AUTH_FAILURE_BURST", "2 x that", "failed authentications at once above that rate"),
    ("MAX_STREAMS_PER_CONNECTION", "100", "concurrent calls on one HTTP/2 connection"),
    ("KEEPALIVE_SECONDS", "60", "ping interval; a connection silent 20 s after is dropped"),
    ("MAX_CONNECTION_IDLE_SECONDS", "300", "an idle connection is closed (0: never)"),
    ("MAX_CONNECTION_AGE_SECONDS", "3600", "a connection is closed after this long (0: never)"),
    ("MAX_INFLATED_MIB", "1024", "largest a deflated DICOM dataset may inflate to"),
    ("MAX_INFLATE_RATIO", "200", "inflated per compressed byte of a deflated dataset"),
    ("MAX_DICOM_ELEMENTS", "250000", "data elements one DICOM instance may hold"),
    ("HEADER_WORKERS", "2", "threads reading DICOM headers, apart from storage's"),
    ("DOCUMENT_KEY", "$DATA_DIR/document-key.secret", "AES key sealing kept FHIR originals"),
    ("DOCUMENT_KEYS_RETIRED", "", "earlier document keys, still read (rotation)"),
    ("CLOCK_SKEW_SECONDS", "60", "how far ahead of the server a reported time may be"),
    ("DICOM_LISTEN", "", "host:port of the DICOM C-STORE listener (unset: none)"),
    ("DICOM_AE_TITLE", "MUTUALREC", "our AE title: the called AE title PACS must use"),
    ("HTTP_LISTEN", "127.0.0.1:8080", "host:port of the HTTP door (pages, DICOMweb); off: none"),
    (
        "HTTP_PUBLIC_URL",
        "",
        "the HTTP door's URL behind a proxy (CDS tokens' audience, study links' host)",
    ),
    ("WEB_SESSION_IDLE_SECONDS", "1800", "a browser session ends after this long unused"),
    ("WEB_SESSION_MAX_SECONDS", "28800", "a browser session ends this long after sign-in"),
    ("DICOMWEB_CACHE_MIB", "256", "WADO-RS keeps checked files in memory (0: off)"),
    ("MAX_STOW_MIB", "16384", "largest STOW-RS request body (each part: MAX_INSTANCE_MIB)"),
    (
        "VIEWER_DIR",
        "",
        "the OHIF viewer's files served at /viewer/ (off: none; default: installed)",
    ),
)


def settings_epilog() -> str:
    """The settings `serve` reads, as an indented table for its --help."""
    from mutualrec.client.table import render

    rows = [(f"MUTUALREC_{name}", default or "-", meaning) for name, default, meaning in SETTINGS]
    table = render(("variable", "default", "meaning"), rows, indent="  ")
    return "settings (environment variables; none is needed for the embedded default):\n" + (
        "\n".join(table)
    )


def document(parser: argparse.ArgumentParser, name: str, summary: str) -> None:
    """Give ``parser`` (the `name` command) its one-line description and its example."""
    parser.description = summary[:1].upper() + summary[1:] + "."
    example = EXAMPLES[name]
    parser.epilog = f"example:\n  {example}"
    if name == "serve":
        parser.epilog += "\n\n" + settings_epilog()
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
