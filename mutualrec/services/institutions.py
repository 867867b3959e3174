"""Administrators' use cases on institutions: register one, record its recognition ("HR")
qualifications."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from mutualrec.services.catalogs import current_catalog
from mutualrec.storage import catalog_store, institutions
from mutualrec.violations import Conflict, Rejected


@dataclass(frozen=True, slots=True)
class NewInstitution:
    """An institution to register; ``code`` is its stable identifier in the region."""

    code: str
    name: str
    district: str
    level: str
    # Reached by city- and region-scope qualifications (compared in lower case).
    city: str = institutions.DEFAULT_CITY
    region: str = institutions.DEFAULT_REGION


@dataclass(frozen=True, slots=True)
class RegisteredInstitution:
    """An institution as registered (code and name trimmed)."""

    code: str
    name: str


@dataclass(frozen=True, slots=True)
class NewQualification:
    """An institution's "HR" mark for one item or every item of a category, for a period."""

    institution_code: str
    item_code: str | None
    category: str | None
    scope: str
    valid_from: dt.datetime
    # Exclusive; None: held until further notice.
    valid_until: dt.datetime | None


class Institutions:
    """Registers institutions and records their qualifications in one index."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def register(self, request: NewInstitution) -> RegisteredInstitution:
        """Register an institution; :class:`Conflict` when its code is taken, :class:`Rejected`
        when a field is unusable."""
        with self._sessions.begin() as session:
            try:
                row = institutions.add_institution(
                    session,
                    request.code,
                    request.name,
                    request.district,
                    request.level,
                    city=request.city,
                    region=request.region,
                )
            except institutions.DuplicateInstitution as taken:
                raise Conflict(str(taken)) from None
            except ValueError as bad:
                raise Rejected(str(bad), []) from None
            return RegisteredInstitution(row.code, row.name)

    def qualify(self, request: NewQualification) -> int:
        """Record a qualification, checked against the current catalog; its id. Raises
        :class:`Rejected` listing every problem."""
        with self._sessions.begin() as session:
            return catalog_store.add_qualification(
                session,
                request.institution_code,
                item_code=request.item_code,
                category=request.category,
                scope=request.scope,
                valid_from=request.valid_from,
                valid_until=request.valid_until,
                catalog=current_catalog(session),
            )
