"""Operators' commands: run the server, load the demo into it, migrate the database."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from mutualrec.cli import connection
from mutualrec.cli.options import server_option, sub
from mutualrec.config import ClientSettings, load_settings


def register(commands: Any, client: ClientSettings) -> None:
    """Add ``serve``, ``demo`` and ``db`` to the top-level commands."""
    sub(commands, "serve", help="run the gRPC server").set_defaults(run=_serve)
    demo = sub(
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
    server_option(demo, client)
    demo.set_defaults(run=_demo)

    db = sub(commands, "db", help="database schema").add_subparsers(dest="db", required=True)
    sub(db, "upgrade", help="apply migrations").set_defaults(run=_db_upgrade)
    sub(db, "current", help="show the schema revision").set_defaults(run=_db_current)


def _serve(_args: argparse.Namespace) -> int:
    from mutualrec.server import serve, serve_processes

    settings = load_settings()
    if settings.processes > 1:
        return serve_processes(settings)
    try:
        asyncio.run(serve(settings))
    except OSError as exc:
        # A port taken or an address not ours: said in one line, not a traceback.
        print(f"mutualrec: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


def _demo(args: argparse.Namespace) -> int:
    from mutualrec.cli.demo import DemoError, default_samples, next_steps, run_demo
    from mutualrec.services.administration import Administration

    settings = load_settings()
    samples = Path(args.samples) if args.samples else default_samples()
    region = Administration(settings).demo_region
    with connection.channel(args) as channel:
        try:
            result = run_demo(channel, region, settings.data_dir, samples, args.server)
        except DemoError as error:
            print(f"mutualrec demo: {error}", file=sys.stderr)
            return 2
    print("\nthe demo is loaded; try next:")
    for line in next_steps(result.env_file):
        print(f"  {line}")
    return 0


def _db_upgrade(_args: argparse.Namespace) -> int:
    from mutualrec.services.maintenance import upgrade_schema

    revision = upgrade_schema(load_settings().database_url)
    print(f"database schema at {revision.current}")
    return 0


def _db_current(_args: argparse.Namespace) -> int:
    from mutualrec.services.maintenance import schema_revision

    revision = schema_revision(load_settings().database_url)
    print(f"database schema at {revision.current or 'nothing'}; code needs {revision.head}")
    return 0
