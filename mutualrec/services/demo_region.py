"""The demo's region, set up in one transaction: its institutions and their category
qualifications (kept when present), and fresh keys for each hospital and a regulator.

`mutualrec demo` calls this before its first call to the server, so a server that has not cached
reference data yet sees it at once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from mutualrec.security.access import HOSPITAL, REGULATOR
from mutualrec.security.api_keys import IssuedKey, issue_key
from mutualrec.services.catalogs import current_catalog
from mutualrec.storage import catalog_store, institutions


@dataclass(frozen=True, slots=True)
class DemoHospital:
    """A hospital of the demo, and the categories it is qualified for (city scope)."""

    code: str
    name: str
    district: str
    level: str
    categories: tuple[str, ...]


class DemoRegion:
    """Sets up the demo's region in one index."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def set_up(
        self, hospitals: Sequence[DemoHospital], qualified_from: dt.datetime
    ) -> dict[str, str]:
        """Register what is missing and issue fresh keys; the tokens by hospital code (and
        ``regulator``)."""
        issued: dict[str, IssuedKey] = {}
        with self._sessions.begin() as session:
            catalog = current_catalog(session)
            held = {
                (q.institution_code, q.category.value)
                for q in catalog_store.qualifications(session)
                if q.category is not None and q.valid_until is None
            }
            for hospital in hospitals:
                try:
                    institutions.find_institution(session, hospital.code)
                except institutions.UnknownInstitution:
                    institutions.add_institution(
                        session, hospital.code, hospital.name, hospital.district, hospital.level
                    )
                for category in hospital.categories:
                    if (hospital.code, category) not in held:
                        catalog_store.add_qualification(
                            session,
                            hospital.code,
                            item_code=None,
                            category=category,
                            scope="city",
                            valid_from=qualified_from,
                            valid_until=None,
                            catalog=catalog,
                        )
                issued[hospital.code] = issue_key()
                institutions.add_key(session, issued[hospital.code], HOSPITAL, hospital.code)
            issued["regulator"] = issue_key()
            institutions.add_key(session, issued["regulator"], REGULATOR)
        return {holder: key.token for holder, key in issued.items()}
