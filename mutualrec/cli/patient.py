"""Patients' commands (with a patient token, or a share link's): the imaging history across
hospitals, downloads, share links."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import grpc

from mutualrec.cli import connection
from mutualrec.cli.options import sub, token_options
from mutualrec.config import ClientSettings


def register(commands: Any, client: ClientSettings) -> None:
    """Add the patients' commands to the top-level commands."""
    history = sub(
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
    token_options(history, client)
    history.set_defaults(run=_history)

    download = sub(
        commands,
        "download",
        help="save a study's DICOM files (patient token, share link, or a hospital's key)",
    )
    download.add_argument(
        "study_uid",
        nargs="?",
        default="",
        help="StudyInstanceUID, or the open_url a check printed (https://.../open#mro_...: "
        "no other credential needed); empty with a share token",
    )
    download.add_argument(
        "--key",
        help="a hospital's API key: open a study its check recognized (default: "
        "MUTUALREC_API_KEY when no token is given)",
    )
    download.add_argument("--out", required=True, metavar="DIR")
    download.add_argument("--series", default="", help="one series only")
    token_options(download, client, "patient or share token")
    download.set_defaults(run=_download)

    share = sub(commands, "share", help="make a read-only link to one study for a doctor")
    share.add_argument("study_uid", help="StudyInstanceUID, or a mutualrec://study/ link")
    share.add_argument("--days", type=float, default=7, help="how long it works (default 7)")
    share.add_argument("--until", default="", help="or an exact ISO 8601 expiry with offset")
    share.add_argument("--note", default="", help="for your own list, e.g. the doctor's name")
    share.add_argument("--json", action="store_true", help="print the reply as JSON")
    token_options(share, client)
    share.set_defaults(run=_share)

    links = sub(commands, "share-links", help="your share links and who opened them")
    links.add_argument("--study", default="", help="links of one study only")
    links.add_argument("--json", action="store_true", help="print the reply as JSON")
    token_options(links, client)
    links.set_defaults(run=_share_links)

    revoke_share = sub(commands, "revoke-share", help="close a share link at once")
    revoke_share.add_argument("link_id")
    token_options(revoke_share, client)
    revoke_share.set_defaults(run=_revoke_share)


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


def _history(args: argparse.Namespace) -> int:
    from google.protobuf.json_format import MessageToDict

    from mutualrec.client.imaging import list_all_studies
    from mutualrec.v1 import imaging_pb2

    token = connection.token(args)
    request = imaging_pb2.ListStudiesRequest(
        page_size=args.page_size,
        modality=args.modality,
        from_date=args.from_date,
        to_date=args.to_date,
        institution_code=args.institution,
    )
    with connection.channel(args) as channel:
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


def _download(args: argparse.Namespace) -> int:
    from mutualrec.client.imaging import download_study
    from mutualrec.client.links import study_link_token, study_uid

    # An https open_url is its own credential and names its own study.
    link_token = study_link_token(args.study_uid)
    token = link_token or connection.token(args)
    uid = "" if link_token else study_uid(args.study_uid)
    with connection.channel(args) as channel:
        saved = download_study(channel, token, uid, Path(args.out), args.series)
    total = sum(f.size_bytes for f in saved)
    print(f"{len(saved)} files, {total} bytes, checked, under {args.out}")
    return 0


def _share(args: argparse.Namespace) -> int:
    from mutualrec.client.links import study_uid
    from mutualrec.client.upload import auth_metadata
    from mutualrec.v1 import imaging_pb2, imaging_pb2_grpc

    expire = args.until or (dt.datetime.now(dt.UTC) + dt.timedelta(days=args.days)).isoformat()
    with connection.channel(args) as channel:
        response = imaging_pb2_grpc.ImagingServiceStub(channel).CreateShareLink(
            imaging_pb2.CreateShareLinkRequest(
                study_instance_uid=study_uid(args.study_uid), expire_time=expire, note=args.note
            ),
            metadata=auth_metadata(connection.token(args)),
        )
    if args.json:
        connection.print_message(response)
    else:
        print(response.uri)
        print(
            f"link {response.link.link_id} until {response.link.expire_time}; "
            "the token is shown only now",
            file=sys.stderr,
        )
    return 0


def _share_links(args: argparse.Namespace) -> int:
    from mutualrec.client.upload import auth_metadata
    from mutualrec.v1 import imaging_pb2, imaging_pb2_grpc

    with connection.channel(args) as channel:
        response = imaging_pb2_grpc.ImagingServiceStub(channel).ListShareLinks(
            imaging_pb2.ListShareLinksRequest(study_instance_uid=args.study),
            metadata=auth_metadata(connection.token(args)),
        )
    if args.json:
        connection.print_message(response)
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


def _revoke_share(args: argparse.Namespace) -> int:
    from mutualrec.client.upload import auth_metadata
    from mutualrec.v1 import imaging_pb2, imaging_pb2_grpc

    with connection.channel(args) as channel:
        link = imaging_pb2_grpc.ImagingServiceStub(channel).RevokeShareLink(
            imaging_pb2.RevokeShareLinkRequest(link_id=args.link_id),
            metadata=auth_metadata(connection.token(args)),
        )
    print(f"{link.link_id} revoked at {link.revoke_time}")
    return 0
