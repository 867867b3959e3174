"""The administrator's services over the index the settings name: what `mutualrec admin` (and
`mutualrec demo`, `mutualrec audit`) call, built once per command.

The index is opened on first use (and its schema checked, or migrated where allowed); the object
store only by the sweep, so no other command needs S3 reachable.
"""

from __future__ import annotations

from functools import cached_property

from sqlalchemy.orm import Session, sessionmaker

from mutualrec.config import Settings
from mutualrec.services.api_keys import ApiKeys
from mutualrec.services.audit_review import AuditReview
from mutualrec.services.catalogs import Catalogs
from mutualrec.services.cds_clients import CdsClients
from mutualrec.services.demo_region import DemoRegion
from mutualrec.services.dicom_peers import DicomPeers
from mutualrec.services.institutions import Institutions
from mutualrec.services.maintenance import Maintenance
from mutualrec.storage.db import ensure_schema, make_engine
from mutualrec.storage.factory import open_object_store


class Administration:
    """The administrator's use cases, each built on first use."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @cached_property
    def _sessions(self) -> sessionmaker[Session]:
        engine = make_engine(self._settings.database_url)
        ensure_schema(engine, auto_migrate=self._settings.auto_migrate)
        return sessionmaker(engine)

    @cached_property
    def institutions(self) -> Institutions:
        """Institutions and their qualifications."""
        return Institutions(self._sessions)

    @cached_property
    def cds_clients(self) -> CdsClients:
        """EHRs allowed to call the CDS Hooks services."""
        return CdsClients(self._sessions)

    @cached_property
    def dicom_peers(self) -> DicomPeers:
        """Hospital PACS allowed to send over DICOM."""
        return DicomPeers(self._sessions)

    @cached_property
    def keys(self) -> ApiKeys:
        """API keys."""
        return ApiKeys(self._sessions)

    @cached_property
    def catalogs(self) -> Catalogs:
        """Catalog versions, code mappings, price lists, the region's policy."""
        return Catalogs(self._sessions)

    @cached_property
    def maintenance(self) -> Maintenance:
        """The sweep and the statistics rebuild."""
        return Maintenance(self._sessions, lambda: open_object_store(self._settings))

    @cached_property
    def audit(self) -> AuditReview:
        """The audit trail, read back."""
        return AuditReview(self._sessions, self._settings.patient_key_secret)

    @cached_property
    def demo_region(self) -> DemoRegion:
        """The demo's institutions and keys."""
        return DemoRegion(self._sessions)
