"""The sweep: removes blobs no index row refers to, which a crash between blob and commit leaves.

Every accepted item is written blob first, index row second; a crash or a failed commit in
between leaves an unreferenced blob, never a row without its blob. The sweep removes such blobs
and nothing else:

- only the prefixes the service writes (``dicom/``, ``fhir/``, ``thumbnails/``) are looked at;
- an object written less than ``grace`` ago is kept whatever the index says, because an upload
  may have stored it and not yet committed the row that refers to it (ingest re-writes a blob it
  finds already held, so an old orphan that a new submission is about to reuse counts as fresh);
- a thumbnail is referenced while an instance with the content hash in its key is held in its
  series.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice

from sqlalchemy import select
from sqlalchemy.orm import Session

from mutualrec.storage.keys import (
    DICOM_PREFIX,
    FHIR_PREFIX,
    PREFIXES,
    THUMBNAIL_PREFIX,
    thumbnail_source,
)
from mutualrec.storage.models import Instance, LabResultVersion, Series
from mutualrec.storage.objects import ObjectInfo, ObjectStore

DEFAULT_GRACE = dt.timedelta(hours=1)
_BATCH = 500


@dataclass
class SweepReport:
    """What a sweep looked at and what it did."""

    examined: int = 0
    referenced: int = 0
    recent: int = 0
    removed: int = 0
    removed_bytes: int = 0
    removed_keys: list[str] = field(default_factory=list)
    removed_temporaries: int = 0


def _batches(items: Iterable[ObjectInfo]) -> Iterator[list[ObjectInfo]]:
    iterator = iter(items)
    while batch := list(islice(iterator, _BATCH)):
        yield batch


def _referenced_dicom(session: Session, keys: list[str]) -> set[str]:
    return set(session.scalars(select(Instance.object_key).where(Instance.object_key.in_(keys))))


def _referenced_fhir(session: Session, keys: list[str]) -> set[str]:
    return set(
        session.scalars(
            select(LabResultVersion.document_key)
            .where(LabResultVersion.document_key.in_(keys))
            .distinct()
        )
    )


def _referenced_thumbnails(session: Session, keys: list[str]) -> set[str]:
    sources = {key: thumbnail_source(key) for key in keys}
    hashes = {source[1] for source in sources.values() if source is not None}
    held = set(
        session.execute(
            select(Series.series_instance_uid, Instance.sha256)
            .join(Series, Series.id == Instance.series_id)
            .where(Instance.sha256.in_(hashes))
        ).tuples()
    )
    return {key for key, source in sources.items() if source is not None and source in held}


_REFERENCES: dict[str, Callable[[Session, list[str]], set[str]]] = {
    DICOM_PREFIX: _referenced_dicom,
    FHIR_PREFIX: _referenced_fhir,
    THUMBNAIL_PREFIX: _referenced_thumbnails,
}


def sweep(
    store: ObjectStore,
    sessions: Callable[[], Session],
    *,
    now: dt.datetime,
    grace: dt.timedelta = DEFAULT_GRACE,
    remove: bool = True,
) -> SweepReport:
    """Remove (or, with ``remove=False``, only count) the unreferenced blobs older than
    ``grace``."""
    report = SweepReport()
    cutoff = now - grace
    for prefix in PREFIXES:
        referenced_of = _REFERENCES[prefix]
        for batch in _batches(store.list(prefix)):
            report.examined += len(batch)
            # An object of unknown age is treated as fresh: never removed on a guess.
            old = [o for o in batch if o.modified is not None and o.modified < cutoff]
            report.recent += len(batch) - len(old)
            if not old:
                continue
            with sessions() as session:
                referenced = referenced_of(session, [o.key for o in old])
            report.referenced += len(referenced)
            for orphan in (o for o in old if o.key not in referenced):
                if remove:
                    store.delete(orphan.key)
                report.removed += 1
                report.removed_bytes += orphan.size
                report.removed_keys.append(orphan.key)
    if remove:
        report.removed_temporaries = store.remove_stale_temporaries(cutoff)
    return report
