"""Re-derive every held lab result's catalog items under a catalog version.

Results keep the items they were indexed with when they arrived; after a new catalog version or
new local code mappings, ``mutualrec admin reindex`` brings the recognition index in line.

Online: batches of results, each its own short transaction; only results whose rows change are
locked, and only if their version is still the one read (an ingest that stored a newer one
indexed it itself), so checks keep being answered and ingest waits at most one batch.
Resumable: each batch commits its checkpoint with its rows, and a run of the same catalog
content resumes after the last result committed. Only differences are written: a result whose
items did not change costs a read. Items are mapped once per distinct (institution, codes,
value, groups), not once per result.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal

from sqlalchemy.orm import Session

from mutualrec.ingest.lab_result import Coding, Groups, LabResult, LabValue, parse_groups
from mutualrec.matching.catalog import Catalog
from mutualrec.matching.codes import items_for_lab_result
from mutualrec.matching.facts import ResultStatus
from mutualrec.matching.indexed_results import ResultItems
from mutualrec.recognition.result_items import detail_for_item, lab_items, lab_ref
from mutualrec.services.result_indexing import index_lab_results
from mutualrec.storage import reindex_store
from mutualrec.storage.reindex_store import Checkpoint, MappingRow, StoredVersion

DEFAULT_BATCH = 20_000


@dataclass(frozen=True, slots=True)
class ReindexProgress:
    """Where a run stands after a batch."""

    results: int
    rows_added: int
    rows_removed: int
    last_lab_result_id: int
    done: bool


def _decimal(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def _result(row: StoredVersion) -> LabResult:
    """The version's result as ingest normalized it (what an index row shows of it)."""
    loinc = tuple(c for c in [row.loinc, *row.other_loinc.split(";")] if c)
    code = Coding(row.value_code_system, row.value_code) if row.value_code else None
    return LabResult(
        identity="",
        status=ResultStatus(row.status),
        loinc=loinc,
        local_codes=(Coding("", row.local_code),) if row.local_code else (),
        code_text=row.code_text,
        value=LabValue(
            row.value_kind,
            number=_decimal(row.value_decimal),
            unit=row.value_unit,
            text=row.value_text,
            code=code,
            low=_decimal(row.value_low),
            high=_decimal(row.value_high),
        ),
        reference_low=_decimal(row.reference_low),
        reference_high=_decimal(row.reference_high),
        reference_text=row.reference_text,
        interpretation=tuple(i for i in row.interpretation.split(";") if i),
        specimen_collected_at=row.specimen_collected_at,
        effective_at=row.effective_at,
        issued_at=row.issued_at,
        report_ref=row.report_ref,
        groups=parse_groups(row.result_groups),
    )


# What decides a version's own items: (institution id, LOINC, other LOINC codes, local code).
_Codes = tuple[int, str, str, str]


class _Mapper:
    """Items of a stored version, memoized by what decides them: its own codes, and the groups
    it came in only when one of them is coded as a panel (a report's members share its groups)."""

    _GROUPS_LIMIT = 200_000

    def __init__(
        self, catalog: Catalog, mappings: Callable[[int], Mapping[str, tuple[str, ...]]]
    ) -> None:
        self.catalog = catalog
        self.mappings = mappings
        self.own: dict[_Codes, frozenset[str]] = {}
        self.panel_groups: dict[str, Groups] = {}

    def items(self, row: MappingRow) -> frozenset[str]:
        if row.value_kind == "none":
            return frozenset()
        key = (row.institution_id, row.loinc, row.other_loinc, row.local_code)
        own = self.own.get(key)
        if own is None:
            own = self.own[key] = self._map(key, ())
        text = row.result_groups
        if not text:
            return own
        groups = self.panel_groups.get(text)
        if groups is None:
            if len(self.panel_groups) >= self._GROUPS_LIMIT:
                self.panel_groups.clear()
            groups = self.panel_groups[text] = tuple(
                g for g in parse_groups(text) if self.catalog.panel_for_loinc(g[0]) is not None
            )
        return self._map(key, groups) if groups else own

    def _map(self, key: _Codes, groups: Groups) -> frozenset[str]:
        institution, loinc, other, local = key
        codes = [c for c in [loinc, *other.split(";")] if c]
        return items_for_lab_result(
            codes, [local] if local else [], self.mappings(institution), self.catalog, groups
        )


def reindex_lab_results(
    sessions: Callable[[], Session],
    catalog: Catalog,
    mappings: Callable[[int], Mapping[str, tuple[str, ...]]],
    *,
    batch: int = DEFAULT_BATCH,
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    on_batch: Callable[[ReindexProgress], None] = lambda _: None,
) -> ReindexProgress:
    """Bring every held lab result's index rows in line with ``catalog``; the final progress.

    ``mappings`` gives an institution's local code mapping. Panel items of versions stored
    before their groups were kept (an empty ``result_groups``) are left as they are.
    """
    mapper = _Mapper(catalog, mappings)
    with sessions() as session, session.begin():
        checkpoint = reindex_store.open_checkpoint(
            session, catalog.version, catalog.sha256, clock()
        )
        last_id = reindex_store.last_lab_result_id(session)
    while True:
        with sessions() as session, session.begin():
            after = checkpoint.last_lab_result_id
            upper = min(after + batch, last_id) if after < last_id else after
            rows = reindex_store.current_versions(session, after, upper)
            checkpoint = replace(
                _apply(session, rows, checkpoint, mapper, catalog), last_lab_result_id=upper
            )
            done = upper >= last_id
            reindex_store.advance(session, checkpoint, clock(), done=done)
        progress = ReindexProgress(
            checkpoint.results,
            checkpoint.rows_added,
            checkpoint.rows_removed,
            checkpoint.last_lab_result_id,
            done,
        )
        on_batch(progress)
        if done:
            return progress


def _apply(
    session: Session,
    rows: list[MappingRow],
    checkpoint: Checkpoint,
    mapper: _Mapper,
    catalog: Catalog,
) -> Checkpoint:
    if not rows:
        return checkpoint
    refs = [lab_ref(row.lab_result_id) for row in rows]
    held = reindex_store.held_items(session, refs)
    removed: list[int] = []
    added: list[ResultItems] = []
    detail_of = detail_for_item(catalog)
    changes: list[tuple[MappingRow, dict[str, int], set[str], set[str]]] = []
    for row, ref in zip(rows, refs, strict=True):
        wanted = set(mapper.items(row))
        held_rows = held.get(ref, {})
        have = held_rows.keys()
        if wanted == have:
            continue
        stale = set()
        groups_unknown = not row.result_groups
        for item in have - wanted:
            item_row = catalog.get(item)
            # A panel item of a version stored before groups were kept cannot be re-derived.
            if not (groups_unknown and item_row is not None and item_row.is_panel):
                stale.add(item)
        if stale or wanted - have:
            changes.append((row, held_rows, stale, wanted - have))
    current = reindex_store.lock_still_current(
        session, {row.lab_result_id: row.version for row, _, _, _ in changes}
    )
    full = reindex_store.versions(
        session,
        [
            (row.lab_result_id, row.version)
            for row, _, _, new in changes
            if new and row.lab_result_id in current
        ],
    )
    for row, held_rows, stale, new in changes:
        if row.lab_result_id not in current:
            continue
        removed += [held_rows[item] for item in stale]
        if new:
            version = full[row.lab_result_id]
            added.append(
                lab_items(
                    row.lab_result_id,
                    _result(version),
                    version.patient_key,
                    version.version,
                    version.institution_id,
                    new,
                    detail_of,
                )
            )
    reindex_store.remove_items(session, removed)
    # Only rows of items a result newly is: none of its rows is stale, so none is dropped.
    index_lab_results(session, added, ())
    return replace(
        checkpoint,
        results=checkpoint.results + len(rows),
        rows_added=checkpoint.rows_added + sum(len(r.details) for r in added),
        rows_removed=checkpoint.rows_removed + len(removed),
    )
