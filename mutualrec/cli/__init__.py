"""The ``mutualrec`` command: one module per audience registers its subcommands and handlers
(:mod:`~mutualrec.cli.serve` serve and db, :mod:`~mutualrec.cli.admin`,
:mod:`~mutualrec.cli.hospital`, :mod:`~mutualrec.cli.patient`, :mod:`~mutualrec.cli.regulator`);
this module assembles them and runs one."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import grpc

from mutualrec import __version__
from mutualrec.cli import admin, hospital, patient, regulator, serve
from mutualrec.config import ClientSettings, ConfigError, load_client_settings
from mutualrec.violations import DomainError


def build_parser(client: ClientSettings | None = None) -> argparse.ArgumentParser:
    """The argument parser of the ``mutualrec`` command; ``client``: the clients' settings
    (read from the environment when not given), which the options default to."""
    client = load_client_settings() if client is None else client
    parser = argparse.ArgumentParser(
        prog="mutualrec",
        description="City-wide mutual recognition of medical exam and lab results: the server, "
        "its administration, and the clients of hospitals, patients and regulators.",
        epilog="new here? run `mutualrec serve` (or `make serve`), then `mutualrec demo` in "
        "another terminal; `mutualrec COMMAND --help` shows a command's options and an example",
    )
    parser.add_argument("--version", action="version", version=f"mutualrec {__version__}")
    parser.set_defaults(client=client)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve.register(commands, client)
    admin.register(commands)
    hospital.register(commands, client)
    patient.register(commands, client)
    regulator.register(commands, client)
    return parser


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
    except DomainError as refused:
        # A service's refusal (a rejected file lists every problem): exit status 2.
        print(f"mutualrec: {refused.summary}", file=sys.stderr)
        for violation in refused.violations:
            print(f"  {violation.field}: {violation.description}", file=sys.stderr)
        return 2
    except (ConfigError, FileNotFoundError, ValueError, LookupError) as exc:
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


def _stdout_closed() -> int:
    """The reader of our output went away (`| head`): stop quietly, as Unix tools do."""
    # Python would flush stdout again at exit and print the same error: point it at devnull.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + 13  # killed by SIGPIPE, as the shell reports it
