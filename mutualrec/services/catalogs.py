"""Administrators' use cases on reference data: catalog versions, institutions' code mappings
and price lists, the region's policy, a declared item's review, and re-deriving lab results'
items under a catalog.

Files are read and checked by the pure readers (:mod:`mutualrec.matching.catalog`,
:mod:`mutualrec.matching.policy`, :mod:`mutualrec.admin_files`); storage keeps the rows, and every
write bumps the administrators' change counter so running servers pick it up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from mutualrec import admin_files
from mutualrec.matching.catalog import Catalog, load_catalog
from mutualrec.matching.policy import Policy, load_policy
from mutualrec.services.reindex import ReindexProgress, reindex_lab_results
from mutualrec.services.result_indexing import review_declared_item
from mutualrec.storage import catalog_store, policy_store
from mutualrec.storage.catalog_store import CatalogVersionInfo
from mutualrec.violations import NotFound, Rejected


def current_catalog(session: Session) -> Catalog:
    """The catalog in force; a database no server has started on yet still checks against the
    packaged catalog, which is recorded then."""
    catalog_store.ensure_packaged_catalog(session)
    return catalog_store.current_catalog(session)


@dataclass(frozen=True, slots=True)
class CatalogLoad:
    """A catalog file recorded as a version."""

    catalog: Catalog
    # False: the same version with the same content was already recorded.
    recorded: bool


@dataclass(frozen=True, slots=True)
class ListLoad:
    """An institution's list (code mapping, price list) replaced by a file's rows."""

    rows: int
    # The catalog version the file was checked against.
    catalog_version: str


@dataclass(frozen=True, slots=True)
class PolicyLoad:
    """A policy file recorded as a version, in force."""

    policy: Policy
    # False: the same version with the same content was already recorded.
    recorded: bool


@dataclass(frozen=True, slots=True)
class DeclaredItemReview:
    """A study after an administrator's word on its declared item."""

    performed_item_code: str
    # Empty: the study is recognized.
    not_recognized_reason: str


class Catalogs:
    """The administrators' reference data in one index."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def load_catalog(self, text: str, version: str) -> CatalogLoad:
        """Record a catalog file as ``version``; :class:`Rejected` with every problem of the
        file, or when the version is recorded with other content."""
        catalog = load_catalog(text, version)
        with self._sessions.begin() as session:
            return CatalogLoad(catalog, catalog_store.ensure_catalog(session, catalog, text))

    def versions(self) -> list[CatalogVersionInfo]:
        """Every recorded catalog version, oldest first (the last one is current)."""
        with self._sessions() as session:
            return catalog_store.catalog_versions(session)

    def load_code_mappings(self, institution_code: str, text: str) -> ListLoad:
        """Replace an institution's local code mapping with a CSV file, checked against the
        current catalog; :class:`Rejected` listing every problem, changing nothing."""
        with self._sessions.begin() as session:
            catalog = current_catalog(session)
            rows = catalog_store.replace_code_mappings(
                session, institution_code, admin_files.read_code_mappings(text, catalog)
            )
        return ListLoad(rows, catalog.version)

    def load_prices(self, institution_code: str, text: str) -> ListLoad:
        """Replace an institution's own price list with a CSV file, checked against the
        current catalog; :class:`Rejected` listing every problem, changing nothing."""
        with self._sessions.begin() as session:
            catalog = current_catalog(session)
            rows = catalog_store.replace_prices(
                session, institution_code, admin_files.read_prices(text, catalog)
            )
        return ListLoad(rows, catalog.version)

    def load_policy(self, text: str) -> PolicyLoad:
        """Record the region's policy file as a version, in force; :class:`Rejected` with every
        problem of the file."""
        policy = load_policy(text)
        with self._sessions.begin() as session:
            recorded = policy_store.ensure_policy(session, policy, text, current_catalog(session))
        return PolicyLoad(policy, recorded)

    def review_declared_item(self, study_uid: str, confirmed: bool) -> DeclaredItemReview:
        """An administrator's word on a study whose declared item contradicts its images: it
        stands (``confirmed``) or the header does; :class:`NotFound` for an unknown study."""
        with self._sessions.begin() as session:
            study = review_declared_item(session, study_uid, confirmed, current_catalog(session))
        if study is None:
            raise NotFound.one(
                "no such study", "STUDY", f"no study {study_uid} is held", "NOT_FOUND"
            )
        return DeclaredItemReview(study.performed_item_code, study.not_recognized_reason)

    def reindex(
        self,
        catalog_version: str | None,
        batch: int,
        on_batch: Callable[[ReindexProgress], None],
    ) -> tuple[Catalog, ReindexProgress]:
        """Re-derive every held lab result's items under a catalog version (the current one by
        default); the catalog and the final progress. Online; resumes if interrupted."""
        with self._sessions.begin() as session:
            catalog = (
                catalog_store.catalog_for_version(session, catalog_version)
                if catalog_version
                else current_catalog(session)
            )
            # Read before the run: a batch holds SQLite's one write lock while it maps.
            mappings = catalog_store.all_institution_mappings(session)
        if catalog is None:
            raise Rejected.one(
                f"no catalog version {catalog_version!r} is recorded",
                "--catalog-version",
                "load it first (mutualrec admin load-catalog), or list them (catalog-versions)",
                "UNKNOWN_CATALOG_VERSION",
            )
        final = reindex_lab_results(
            self._sessions, catalog, lambda i: mappings.get(i, {}), batch=batch, on_batch=on_batch
        )
        return catalog, final
