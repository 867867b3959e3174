"""Versions of the region's policy file: recorded as loaded, the last one in force."""

from __future__ import annotations

import datetime as dt
import hashlib
import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from mutualrec.matching.catalog import Catalog
from mutualrec.matching.policy import DEFAULT_POLICY, Policy, load_policy
from mutualrec.storage import admin_changes
from mutualrec.storage.models import Institution, RegionPolicyVersion
from mutualrec.storage.sql import insert_ignoring_conflicts
from mutualrec.violations import Rejected, Violation

_VERSION_SHAPE = re.compile(r"^[A-Za-z0-9._-]{1,32}$")


def _check_references(session: Session, policy: Policy, catalog: Catalog) -> None:
    """Suspensions name institutions the region knows and items the catalog lists."""
    known = set(session.scalars(select(Institution.code)))
    problems = []
    for index, suspension in enumerate(policy.suspensions):
        where = f"suspensions[{index}]"
        if suspension.institution_code not in known:
            problems.append(
                Violation(
                    f"{where}.institution",
                    f"no institution {suspension.institution_code} is registered",
                    "UNKNOWN_INSTITUTION",
                )
            )
        if suspension.item_code is not None and catalog.get(suspension.item_code) is None:
            problems.append(
                Violation(
                    f"{where}.item",
                    f"catalog {catalog.version} has no item {suspension.item_code}",
                    "UNKNOWN_ITEM",
                )
            )
    if not _VERSION_SHAPE.match(policy.version):
        problems.append(
            Violation(
                "version",
                "a version is up to 32 letters, digits, '.', '_' or '-', e.g. 2026.2",
                "BAD_POLICY_VERSION",
            )
        )
    if problems:
        raise Rejected(f"the policy file has {len(problems)} problem(s)", problems)


def ensure_policy(session: Session, policy: Policy, source_text: str, catalog: Catalog) -> bool:
    """Record ``policy`` (read from the file ``source_text``) as a version; whether this call
    recorded it (False: the same version with the same content was already recorded).

    A version never changes: loading it again with other content is refused.
    """
    if hashlib.sha256(source_text.encode("utf-8")).hexdigest() != policy.sha256:
        raise ValueError(f"policy {policy.version} was not read from the source text given")
    _check_references(session, policy, catalog)
    if insert_ignoring_conflicts(
        session,
        RegionPolicyVersion,
        {
            "version": policy.version,
            "sha256": policy.sha256,
            "source_text": source_text,
            "loaded_at": dt.datetime.now(dt.UTC),
        },
    ):
        # Every server's reference data holds the policy in force: tell them it changed.
        admin_changes.bump(session)
        return True
    recorded = session.scalar(
        select(RegionPolicyVersion.sha256).where(RegionPolicyVersion.version == policy.version)
    )
    if recorded != policy.sha256:
        raise Rejected.one(
            f"policy {policy.version} is already recorded with other content",
            "version",
            f"policy {policy.version} was loaded from a file with SHA-256 {recorded}, this one "
            f"has {policy.sha256}; a version never changes: load it as a new one",
            "POLICY_VERSION_EXISTS",
        )
    return False


def current_policy(session: Session) -> Policy:
    """The policy loaded last; the packaged default before any is loaded."""
    text = session.scalar(
        select(RegionPolicyVersion.source_text).order_by(RegionPolicyVersion.id.desc()).limit(1)
    )
    return DEFAULT_POLICY if text is None else load_policy(text)
