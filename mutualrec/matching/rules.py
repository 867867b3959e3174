"""The recognition rules: may this patient's existing results stand in for an ordered item?"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from mutualrec.matching import reasons
from mutualrec.matching.catalog import Catalog, CatalogItem
from mutualrec.matching.codes import OrderResolution
from mutualrec.matching.facts import (
    FINAL_STATUSES,
    PENDING_STATUSES,
    Finding,
    InstitutionFacts,
    Qualification,
    ResultFacts,
    Scope,
    Verdict,
    require_aware,
)
from mutualrec.matching.language import Reason
from mutualrec.matching.policy import Policy, Suspension, WindowAnchor

_NO_SAVING = 0


class _IssuerGap(enum.Enum):
    """Why a final, valid result's issuer does not count for the asker."""

    LEVEL = enum.auto()
    NO_MARK = enum.auto()
    SUSPENDED = enum.auto()
    OUT_OF_SCOPE = enum.auto()


@dataclass(frozen=True, slots=True)
class _Final:
    """A final result that stands for the ordered item, with its validity worked out."""

    result: ResultFacts
    item: CatalogItem
    window: dt.timedelta
    valid_until: dt.datetime
    valid: bool
    # When the window runs from specimen collection, the collection time; None from the report.
    collected_at: dt.datetime | None


def check_item(
    item: CatalogItem,
    catalog: Catalog,
    results: Sequence[ResultFacts],
    asker: InstitutionFacts,
    qualifications: Sequence[Qualification],
    received_at: dt.datetime,
    policy: Policy,
    price_list: Mapping[str, int] | None = None,
) -> Finding:
    """The verdict for one ordered item, given every result version this patient holds.

    ``received_at`` is when the platform received the check, never a time the HIS claims.
    ``price_list`` holds the asking institution's prices by item code; the catalog's reference
    price stands in for items it does not list. Raises ValueError on a naive ``received_at``.
    """
    require_aware(received_at, "received_at")
    wanted: dict[str, CatalogItem] = {}
    for code in catalog.satisfiers(item.code):
        satisfier = catalog.get(code)
        if satisfier is not None:
            wanted[code] = satisfier
    versions = [result for result in _latest_versions(results) if result.item_code in wanted]
    held = [result for result in versions if result.held]
    current = [result for result in versions if not result.held]
    finals = [
        _final(result, wanted[result.item_code], item, received_at, policy)
        for result in current
        if result.status in FINAL_STATUSES
    ]

    valid = [final for final in finals if final.valid]
    if valid:
        assessed = [(final, _issuer_gap(final, asker, qualifications, policy)) for final in valid]
        qualified = [final for final, gap in assessed if gap is None]
        if qualified:
            best = max(qualified, key=_recency)
            age = _age(received_at, best.result)
            price = (price_list or {}).get(item.code, item.reference_price_fen)
            reason = reasons.recognizable(
                best.item, item, best.result, age, best.valid_until, received_at, best.collected_at
            )
            return _finding(Verdict.RECOGNIZABLE, item, best, age, None, price, reason)
        best, gap = max(assessed, key=lambda pair: _recency(pair[0]))
        age = _age(received_at, best.result)
        reason = _gap_reason(gap, best, item, age, asker, qualifications, policy)
        return _finding(Verdict.ISSUER_NOT_QUALIFIED, item, best, age, None, _NO_SAVING, reason)

    pending = [result for result in current if result.status in PENDING_STATUSES]
    newest = max(pending, key=_result_recency) if pending else None
    if finals:
        latest = max(finals, key=lambda final: (final.valid_until, *_recency(final)))
        age = _age(received_at, latest.result)
        if newest is None or newest.report_time <= latest.result.report_time:
            reason = reasons.expired(
                latest.item,
                item,
                latest.result,
                age,
                latest.valid_until,
                latest.window,
                received_at,
                latest.collected_at,
            )
            return _finding(
                Verdict.EXPIRED, item, latest, age, latest.valid_until, _NO_SAVING, reason
            )
        # A newer result is on its way: the doctor waits for it rather than for nothing.
        reason = reasons.pending_after_expired(
            wanted[newest.item_code],
            item,
            newest,
            _age(received_at, newest),
            latest.result,
            latest.valid_until,
            received_at,
        )
    elif newest is not None:
        reason = reasons.preliminary_only(
            wanted[newest.item_code], item, newest, _age(received_at, newest)
        )
    if newest is not None:
        return Finding(
            verdict=Verdict.PRELIMINARY_ONLY,
            item=item,
            result=newest,
            valid_until=None,
            age=_age(received_at, newest),
            expired_since=None,
            saving_fen=_NO_SAVING,
            reason=reason,
        )

    if held:
        study = max(held, key=_result_recency)
        age = _age(received_at, study)
        reason = reasons.held_for_review(wanted[study.item_code], item, study, age)
        return Finding(
            verdict=Verdict.NO_RESULT,
            item=item,
            result=study,
            valid_until=None,
            age=age,
            expired_since=None,
            saving_fen=_NO_SAVING,
            reason=reason,
        )

    return _without_result(Verdict.NO_RESULT, item, reasons.no_result(item))


def unresolved_finding(resolution: OrderResolution, catalog: Catalog) -> Finding:
    """The finding for an ordered code that stands for no catalog item.

    Raises ValueError when the resolution did find items: check those with :func:`check_item`.
    """
    if resolution.verdict is Verdict.NOT_COVERED:
        reason = reasons.not_covered(resolution.ordered_code, catalog.version)
    elif resolution.verdict is Verdict.UNKNOWN_CODE:
        reason = reasons.unknown_code(resolution.ordered_code)
    else:
        raise ValueError(f"{resolution.ordered_code} resolved to catalog items")
    return _without_result(resolution.verdict, None, reason)


def _latest_versions(results: Iterable[ResultFacts]) -> list[ResultFacts]:
    """The rows of each result's highest version: an amendment supersedes, a withdrawal too."""
    rows = list(results)
    latest: dict[str, int] = {}
    for row in rows:
        latest[row.result_ref] = max(row.version, latest.get(row.result_ref, row.version))
    return [row for row in rows if row.version == latest[row.result_ref]]


def _age(received_at: dt.datetime, result: ResultFacts) -> dt.timedelta:
    """How old the result is when the check arrives; zero for one stamped a moment later."""
    return max(received_at - result.report_time, dt.timedelta(0))


def _to_the_second(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC).replace(microsecond=0)


def _final(
    result: ResultFacts,
    result_item: CatalogItem,
    ordered: CatalogItem,
    received_at: dt.datetime,
    policy: Policy,
) -> _Final:
    # The stricter window wins: an order for a fast-changing item is not satisfied by a result
    # whose own item happens to keep longer.
    window = min(ordered.validity, result_item.validity)
    # A result indexed before collection times were kept runs from its report time until the
    # index is rebuilt: later than collection, so it errs on the side of the old rule.
    collected_at = (
        result.collected_at
        if policy.anchor(result_item.category) is WindowAnchor.COLLECTION
        else None
    )
    start = collected_at or result.report_time
    # Elapsed time, not wall-clock time: a 6-hour window is 6 hours across a DST change too.
    valid_until = start.astimezone(dt.UTC) + window
    valid = _to_the_second(received_at) <= _to_the_second(valid_until)
    return _Final(result, result_item, window, valid_until, valid, collected_at)


def _recency(final: _Final) -> tuple[dt.datetime, int, str, str]:
    return _result_recency(final.result)


def _result_recency(result: ResultFacts) -> tuple[dt.datetime, int, str, str]:
    """Newest report first, then the higher version; the rest only makes the choice stable."""
    return (result.report_time, result.version, result.result_ref, result.item_code)


def _marks(final: _Final, qualifications: Iterable[Qualification]) -> list[Qualification]:
    """The issuer's qualifications for the result's item that held at its report time."""
    result = final.result
    return [
        mark
        for mark in qualifications
        if mark.institution_code == result.issuer.code
        and (
            mark.item_code == final.item.code
            if mark.item_code is not None
            else mark.category is final.item.category
        )
        and mark.valid_from <= result.report_time
        and (mark.valid_until is None or result.report_time < mark.valid_until)
    ]


def _scope_covers(scope: Scope, issuer: InstitutionFacts, asker: InstitutionFacts) -> bool:
    if scope is Scope.NATIONAL:
        return True
    if scope is Scope.REGION:
        return issuer.region == asker.region
    return issuer.city == asker.city


def _issuer_gap(
    final: _Final,
    asker: InstitutionFacts,
    qualifications: Iterable[Qualification],
    policy: Policy,
) -> _IssuerGap | None:
    issuer = final.result.issuer
    # The level rule first: a result it refuses is refused whatever the issuer's marks.
    if not policy.level_rule(final.item.category).allows(issuer.level, asker.level):
        return _IssuerGap.LEVEL
    marks = _marks(final, qualifications)
    if not marks:
        return _IssuerGap.NO_MARK
    if _suspension(final, policy) is not None:
        return _IssuerGap.SUSPENDED
    if not any(_scope_covers(mark.scope, issuer, asker) for mark in marks):
        return _IssuerGap.OUT_OF_SCOPE
    return None


def _suspension(final: _Final, policy: Policy) -> Suspension | None:
    """The suspension of the issuer's qualification for the item at the result's report time."""
    result, item = final.result, final.item
    return next(
        (
            suspension
            for suspension in policy.suspensions
            if suspension.covers(result.issuer.code, item.code, item.category)
            and suspension.during(result.report_time)
        ),
        None,
    )


def _gap_reason(
    gap: _IssuerGap | None,
    final: _Final,
    ordered: CatalogItem,
    age: dt.timedelta,
    asker: InstitutionFacts,
    qualifications: Iterable[Qualification],
    policy: Policy,
) -> Reason:
    if gap is _IssuerGap.OUT_OF_SCOPE:
        scopes = frozenset(mark.scope for mark in _marks(final, qualifications))
        return reasons.issuer_out_of_scope(final.item, ordered, final.result, age, asker, scopes)
    if gap is _IssuerGap.LEVEL:
        rule = policy.level_rule(final.item.category)
        return reasons.level_rule(final.item, ordered, final.result, age, asker, rule.value)
    suspension = _suspension(final, policy)
    if gap is _IssuerGap.SUSPENDED and suspension is not None:
        return reasons.qualification_suspended(
            final.item, ordered, final.result, age, suspension.start, suspension.reason
        )
    return reasons.issuer_without_mark(final.item, ordered, final.result, age)


def _finding(
    verdict: Verdict,
    ordered: CatalogItem,
    final: _Final,
    age: dt.timedelta,
    expired_since: dt.datetime | None,
    saving_fen: int,
    reason: Reason,
) -> Finding:
    return Finding(
        verdict=verdict,
        item=ordered,
        result=final.result,
        valid_until=final.valid_until,
        age=age,
        expired_since=expired_since,
        saving_fen=saving_fen,
        reason=reason,
    )


def _without_result(verdict: Verdict, ordered: CatalogItem | None, reason: Reason) -> Finding:
    return Finding(
        verdict=verdict,
        item=ordered,
        result=None,
        valid_until=None,
        age=None,
        expired_since=None,
        saving_fen=_NO_SAVING,
        reason=reason,
    )
