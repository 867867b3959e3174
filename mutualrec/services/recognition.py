"""The recognition use cases: the ordering-time check and the doctor's decision. Each reads the
index, applies the rules of :mod:`mutualrec.matching`, and keeps the record."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Engine

from mutualrec.identity import IdentityDocument, patient_key
from mutualrec.matching.decisions import DeclineReason, validate_decision
from mutualrec.matching.facts import Verdict
from mutualrec.matching.indexed_results import IndexedResult
from mutualrec.matching.language import Language, preferred_language
from mutualrec.matching.order_lines import (
    CheckedLine,
    OrderLine,
    decide_lines,
    plan_lines,
    wanted_items,
)
from mutualrec.money import to_fen, yuan
from mutualrec.security.api_keys import Principal
from mutualrec.security.audit import touched
from mutualrec.services.batches import Batcher
from mutualrec.services.outage import unavailable_when_unreachable
from mutualrec.services.reference import ReferenceCache, ReferenceData
from mutualrec.statistics.periods import today
from mutualrec.statistics.report import Directory, LineFact
from mutualrec.statistics.tally import DayDeltas, decision_rows, lines_rows
from mutualrec.storage import recognition_index
from mutualrec.storage.driver_cursors import HeldConnection
from mutualrec.storage.recognition_index import (
    CheckLineRecord,
    CheckRecord,
    DecisionOnRecord,
    DecisionRecord,
    DecisionToRecord,
    LineOnRecord,
)
from mutualrec.violations import Conflict, NotFound, Rejected, Violation

# An order is a handful of items; a hundred is a client bug, not a doctor's order.
MAX_ORDERED_CODES = 100
# The doctor decides at ordering time; a decision reported later than this is refused, which
# also lets the statistics close a day for good.
DECISION_WINDOW = dt.timedelta(hours=24)
# An Accept-Language value names a few languages; a longer one is a client bug.
MAX_ACCEPT_LANGUAGE = 256


# A placeholder outcome, replaced before a batch's outcomes are returned.
_UNANSWERED = Exception("unanswered")


class UnknownCheckLine(NotFound):
    """No such check line for this institution (another's checks are not disclosed)."""


class DecisionConflict(Conflict):
    """The line is already decided otherwise, or cannot be decided."""


@dataclass(frozen=True, slots=True)
class CheckReport:
    """A check as answered and recorded."""

    check_id: str
    received_at: dt.datetime
    catalog_version: str
    lines: list[CheckedLine]
    # The language the reasons were recorded in, for the reply to use too.
    language: Language

    @property
    def total_saving_fen(self) -> int:
        """What recognizing every recognizable line would save."""
        return sum(c.finding.saving_fen for c in self.lines)


@dataclass(frozen=True, slots=True)
class DecisionReport:
    """A decision as recorded, and whether this call recorded it."""

    check_id: str
    line: int
    accepted: bool
    reason: DeclineReason | None
    booked_saving_fen: int
    already_recorded: bool
    decided_at: dt.datetime


@dataclass(frozen=True, slots=True)
class CheckContext:
    """What the HIS tells about the order, kept with the check."""

    order_id: str = ""
    department: str = ""
    emergency: bool = False


@dataclass(frozen=True, slots=True)
class CheckRequest:
    """An ordering-time check as any door receives it."""

    patient: IdentityDocument
    ordered_codes: Sequence[str]
    context: CheckContext
    # The caller's Accept-Language: which language the reasons are answered in.
    accept_language: str
    # The cut-off of every validity window: when the region received the check.
    received_at: dt.datetime


@dataclass(frozen=True, slots=True)
class DecisionRequest:
    """A doctor's decision on one line of a check."""

    check_id: str
    # The line number, or the catalog item code of the line.
    line: int | str
    accepted: bool
    reason: DeclineReason | None
    reason_text: str
    decided_at: dt.datetime


@dataclass(frozen=True, slots=True)
class _Check:
    """A check waiting for its batch: the request, who asks, and the patient's key."""

    request: CheckRequest
    asker_id: int
    patient_key: str


@dataclass(frozen=True, slots=True)
class _Decision:
    """A decision waiting for its batch, with the institution deciding."""

    request: DecisionRequest
    institution_id: int


@dataclass(frozen=True, slots=True)
class _Planned:
    """A check that passed validation, with its order lines planned against the reference."""

    check: _Check
    data: ReferenceData
    lines: list[OrderLine]
    prices: dict[str, int]
    language: Language


@dataclass(frozen=True, slots=True)
class _Answered:
    """A check answered by the rules, with what its record keeps."""

    report: CheckReport
    check: CheckRecord
    lines: list[CheckLineRecord]
    facts: list[LineFact]
    directory: Directory


class Recognition:
    """Runs checks and records decisions against the index.

    Checks go in batches (:class:`mutualrec.services.batches.Batcher`): those arriving while a
    batch is at the database share one read of the recognition rows and one record of checks and
    lines, and each caller gets its own answer as soon as they return. Decisions likewise, in
    batches of their own: one read of their checks' lines, one write. On PostgreSQL ``engine``
    is a ``fast_records`` engine (see :func:`mutualrec.storage.db.make_engine`); decisions still
    commit durably.
    """

    def __init__(
        self,
        engine: Engine,
        reference: ReferenceCache,
        patient_key_secret: bytes,
        max_batch: int,
    ) -> None:
        self.engine = engine
        self.reference = reference
        self._patient_key_secret = patient_key_secret
        # Each batch worker keeps one connection for its statements (see HeldConnection).
        self._check_connection = HeldConnection(engine)
        self._decision_connection = HeldConnection(engine)
        self._checks: Batcher[_Check, CheckReport] = Batcher(
            "mutualrec-checks", self._check_batch, max_batch
        )
        self._decisions: Batcher[_Decision, DecisionReport] = Batcher(
            "mutualrec-decisions", self._decision_batch, max_batch
        )

    @property
    def checks_waiting(self) -> int:
        """Checks queued behind the batch at the database."""
        return self._checks.waiting

    @property
    def decisions_waiting(self) -> int:
        """Decisions queued behind the batch at the database."""
        return self._decisions.waiting

    def close(self) -> None:
        """Answer the checks and decisions still queued and stop the batch workers."""
        self._checks.close()
        self._decisions.close()
        self._check_connection.release()
        self._decision_connection.release()

    async def check(self, request: CheckRequest, principal: Principal) -> CheckReport:
        """Answer a check for the caller's institution and record it; raises
        :class:`Rejected` for an unusable order."""
        asker_id = principal.institution_id
        assert asker_id is not None  # only institutions are authorized to check
        key = patient_key(request.patient, self._patient_key_secret)
        # In the caller's context, where its audit record is: the batch runs elsewhere.
        touched(key, f"check of {len(request.ordered_codes)} ordered items")
        with unavailable_when_unreachable("the index cannot be reached now", "check again"):
            return await self._checks.submit(_Check(request, asker_id, key))

    def _check_batch(self, checks: list[_Check]) -> list[CheckReport | Exception]:
        """Answer a batch of checks: each validated and planned alone, one read of their
        results, the rules per check, one record of them all.

        A failure of a shared statement gives no one a wrong answer: the statement is redone
        check by check, so each caller gets what it would have had alone.
        """
        # Every check's outcome is set below: its report, or the exception its caller gets.
        outcomes: list[CheckReport | Exception] = [_UNANSWERED] * len(checks)
        planned: list[tuple[int, _Planned]] = []
        for n, check in enumerate(checks):
            try:
                planned.append((n, self._plan(check)))
            except Exception as exc:
                outcomes[n] = exc
        wanted = [
            recognition_index.WantedResults(
                p.check.patient_key, sorted(wanted_items(p.lines, p.data.catalog))
            )
            for _, p in planned
        ]
        found: list[list[IndexedResult] | Exception]
        try:
            found = list(
                recognition_index.results_of_checks(self.engine, wanted, self._check_connection)
            )
        except Exception:
            found = [self._results_alone(w) for w in wanted]
        answered: list[tuple[int, _Answered]] = []
        ids = _check_ids(len(planned))
        for (n, plan), rows, check_id in zip(planned, found, ids, strict=True):
            if isinstance(rows, Exception):
                outcomes[n] = rows
                continue
            try:
                answered.append((n, self._answer(plan, rows, check_id)))
            except Exception as exc:
                outcomes[n] = exc
        try:
            self._record([a for _, a in answered])
        except Exception:
            for n, one in answered:
                outcomes[n] = self._recorded_alone(one)
        else:
            for n, one in answered:
                outcomes[n] = one.report
        assert not any(o is _UNANSWERED for o in outcomes)
        return outcomes

    def _record(self, answered: Sequence[_Answered]) -> None:
        """Record checks with their lines, and their statistics deltas summed per day and group:
        the compactor sums them anyway, and a batch of checks of a few hospitals and items
        shares most of its groups, so the record carries far fewer delta rows than lines."""
        facts: dict[tuple[dt.date, int], tuple[Directory, list[LineFact]]] = {}
        for one in answered:
            day = today(one.report.received_at)
            facts.setdefault((day, id(one.directory)), (one.directory, []))[1].extend(one.facts)
        recognition_index.record_checks_of_batch(
            self.engine,
            [one.check for one in answered],
            [line for one in answered for line in one.lines],
            [
                DayDeltas(day, tuple(lines_rows(day_facts, directory)))
                for (day, _), (directory, day_facts) in facts.items()
            ],
            self._check_connection,
        )

    def _results_alone(
        self, wanted: recognition_index.WantedResults
    ) -> list[IndexedResult] | Exception:
        """One check's read on its own, after its batch's read failed."""
        try:
            return recognition_index.results_of_checks(
                self.engine, [wanted], self._check_connection
            )[0]
        except Exception as exc:
            return exc

    def _recorded_alone(self, answered: _Answered) -> CheckReport | Exception:
        """One check's record on its own, after its batch's record failed."""
        try:
            self._record([answered])
        except Exception as exc:
            return exc
        return answered.report

    def _plan(self, check: _Check) -> _Planned:
        """Validate the order and plan its lines; raises :class:`Rejected`."""
        request = check.request
        if len(request.accept_language) > MAX_ACCEPT_LANGUAGE:
            raise Rejected.one(
                "the language preference is too long",
                "accept_language",
                f"at most {MAX_ACCEPT_LANGUAGE} characters, e.g. zh-CN or en;q=0.9",
                "TOO_LONG",
            )
        language = preferred_language(request.accept_language)
        codes = [c.strip() for c in request.ordered_codes]
        violations = [
            Violation(f"ordered_codes[{i}]", "empty code", "EMPTY_CODE")
            for i, c in enumerate(codes)
            if not c
        ]
        if not codes:
            violations.append(
                Violation("ordered_codes", "an order names at least one item", "EMPTY_ORDER")
            )
        if len(codes) > MAX_ORDERED_CODES:
            violations.append(
                Violation(
                    "ordered_codes",
                    f"at most {MAX_ORDERED_CODES} codes per check",
                    "TOO_MANY_CODES",
                )
            )
        if violations:
            raise Rejected("the order cannot be checked", violations)
        data = self.reference.data_knowing(check.asker_id)
        lines = plan_lines(codes, data.catalog, self.reference.mappings(check.asker_id))
        return _Planned(check, data, lines, self.reference.prices(check.asker_id), language)

    def _answer(self, plan: _Planned, rows: list[IndexedResult], check_id: str) -> _Answered:
        """The rules' answer to a planned check given the patient's results, and its record."""
        check, data = plan.check, plan.data
        received_at = check.request.received_at
        checked = decide_lines(
            plan.lines, rows, data, check.asker_id, received_at, plan.prices, data.policy
        )
        report = CheckReport(check_id, received_at, data.catalog.version, checked, plan.language)
        record, lines, facts = _record_rows(
            report, check.asker_id, check.patient_key, check.request.context
        )
        return _Answered(report, record, lines, facts, data.directory)

    async def decide(self, request: DecisionRequest, principal: Principal) -> DecisionReport:
        """Record the doctor's decision on a line of the caller's institution's check;
        idempotent, the first decision stands.

        Decisions go in batches like checks: those waiting together share one read of their
        checks' lines and one durable write of decisions and statistics deltas."""
        institution_id = principal.institution_id
        assert institution_id is not None  # only institutions are authorized to decide
        violations = validate_decision(request.accepted, request.reason, request.reason_text)
        if violations:
            raise Rejected(
                "the decision is incomplete",
                # The rules name the free text "text"; every door calls it reason_text.
                [
                    Violation(
                        "reason_text" if v.field == "text" else v.field, v.description, v.reason
                    )
                    for v in violations
                ],
            )
        with unavailable_when_unreachable(
            "the index cannot be reached now", "nothing was recorded: send the decision again"
        ):
            return await self._decisions.submit(_Decision(request, institution_id))

    def _decision_batch(self, decisions: list[_Decision]) -> list[DecisionReport | Exception]:
        """Answer a batch of decisions: one read of their checks' lines, the rules per
        decision, one write of the new decisions with their deltas.

        Two decisions of the batch on one line: the first is written, the later ones answered
        as if they came after it. A failure of a shared statement is redone decision by
        decision, so each caller gets what it would have had alone.
        """
        outcomes: list[DecisionReport | Exception] = [_UNANSWERED] * len(decisions)
        try:
            lines = recognition_index.lines_of_checks(
                self.engine, [d.request.check_id for d in decisions], self._decision_connection
            )
            read: list[dict[str, list[LineOnRecord]] | Exception] = [lines] * len(decisions)
        except Exception:
            read = [self._lines_alone(d.request.check_id) for d in decisions]
        writes: list[tuple[int, DecisionToRecord]] = []
        for n, (decision, of_checks) in enumerate(zip(decisions, read, strict=True)):
            try:
                if isinstance(of_checks, Exception):
                    raise of_checks
                judged = self._judge(decision, of_checks.get(decision.request.check_id, []))
            except Exception as exc:
                outcomes[n] = exc
                continue
            if isinstance(judged, DecisionReport):
                outcomes[n] = judged
            else:
                writes.append((n, judged))
        # The first decision on each line is written; the batch's later ones follow it.
        firsts: dict[tuple[str, int], int] = {}
        for position, (_, write) in enumerate(writes):
            firsts.setdefault((write.decision.check_id, write.decision.line), position)
        written = sorted(firsts.values())
        try:
            recorded = recognition_index.record_decisions(
                self.engine, [writes[p][1] for p in written], self._decision_connection
            )
        except Exception:
            for n, write in writes:
                outcomes[n] = self._recorded_decision_alone(write)
        else:
            on_record = dict(zip(written, recorded, strict=True))
            for position, (n, write) in enumerate(writes):
                key = (write.decision.check_id, write.decision.line)
                decided, new = on_record[firsts[key]]
                outcomes[n] = _outcome(write.decision, decided, new and position == firsts[key])
        assert not any(o is _UNANSWERED for o in outcomes)
        return outcomes

    def _lines_alone(self, check_id: str) -> dict[str, list[LineOnRecord]] | Exception:
        """One decision's read on its own, after its batch's read failed."""
        try:
            return recognition_index.lines_of_checks(
                self.engine, [check_id], self._decision_connection
            )
        except Exception as exc:
            return exc

    def _recorded_decision_alone(self, write: DecisionToRecord) -> DecisionReport | Exception:
        """One decision's write on its own, after its batch's write failed."""
        try:
            [(decided, new)] = recognition_index.record_decisions(
                self.engine, [write], self._decision_connection
            )
        except Exception as exc:
            return exc
        return _outcome(write.decision, decided, new)

    def _judge(
        self, decision: _Decision, lines: list[LineOnRecord]
    ) -> DecisionReport | DecisionToRecord:
        """The decision's answer when its line has one already, else what to write; raises
        :class:`UnknownCheckLine` or :class:`DecisionConflict`."""
        request = decision.request
        check_id, line, accepted, reason = (
            request.check_id,
            request.line,
            request.accepted,
            request.reason,
        )
        on_record = next(
            (
                one
                for one in lines
                if (one.item_code == line if isinstance(line, str) else one.line == line)
            ),
            None,
        )
        if on_record is None or on_record.institution_id != decision.institution_id:
            if isinstance(line, str) and on_record is None:
                raise UnknownCheckLine.one(
                    f"check {check_id} has no line of item {line}",
                    "item_code",
                    "no line of this item was answered to this institution",
                    "UNKNOWN_CHECK_LINE",
                )
            raise UnknownCheckLine.one(
                f"no line {line} of check {check_id} of this institution",
                "line" if on_record is None and _is_uuid(check_id) else "check_id",
                "no such check line was answered to this institution",
                "UNKNOWN_CHECK_LINE",
            )
        line = on_record.line
        if request.decided_at - on_record.received_at > DECISION_WINDOW:
            raise DecisionConflict.one(
                f"check {check_id} was answered at {on_record.received_at.isoformat()}; "
                "decisions are recorded within 24 hours of their check",
                "check_id",
                "too late to record a decision on this check",
                "DECISION_TOO_LATE",
            )
        if on_record.verdict != Verdict.RECOGNIZABLE.value:
            raise DecisionConflict.one(
                f"line {line} was {on_record.verdict}: there is nothing to recognize",
                "line",
                "only RECOGNIZABLE lines take a decision",
                "NOT_RECOGNIZABLE",
            )
        saving = on_record.estimated_saving if accepted else "0.00"
        row = DecisionRecord(
            check_id=check_id,
            line=line,
            accepted=accepted,
            reason=reason.value if reason else "",
            reason_text=request.reason_text[:500],
            booked_saving=saving,
            decided_at=request.decided_at,
        )
        if on_record.decision is not None:
            answer = _outcome(row, on_record.decision, False)
            if isinstance(answer, DecisionConflict):
                raise answer
            return answer
        fact = LineFact(
            check_id=check_id,
            asker_id=on_record.institution_id,
            issuer_id=on_record.issuer_institution_id,
            item_code=on_record.item_code,
            verdict=on_record.verdict,
            accepted=accepted,
            reason=row.reason,
            booked_saving=saving,
        )
        deltas = DayDeltas(
            today(on_record.received_at),
            tuple(decision_rows(fact, self.reference.data().directory)),
        )
        return DecisionToRecord(row, deltas)


def _outcome(
    decision: DecisionRecord, recorded: DecisionOnRecord, new: bool
) -> DecisionReport | DecisionConflict:
    """The answer to ``decision`` given the line's decision on record and whether ``decision``
    is it: a report, or ALREADY_DECIDED when the line was decided otherwise before."""
    if not new and (recorded.accepted, recorded.reason) != (decision.accepted, decision.reason):
        return DecisionConflict.one(
            f"line {decision.line} of check {decision.check_id} is already "
            f"{'accepted' if recorded.accepted else 'declined'}",
            "decision",
            "a decision is recorded once; it cannot be changed",
            "ALREADY_DECIDED",
        )
    return DecisionReport(
        decision.check_id,
        decision.line,
        recorded.accepted,
        DeclineReason(recorded.reason) if recorded.reason else None,
        to_fen(recorded.booked_saving),
        not new,
        recorded.decided_at,
    )


def _check_ids(count: int) -> list[str]:
    """``count`` random (version 4) UUIDs from one read of the system's random source: a read per
    check released and took back the GIL each time, and the batch worker then waited for the
    event loop's thread to let it go (a tenth of the worker's samples in the profile)."""
    random = os.urandom(16 * count)
    return [str(uuid.UUID(bytes=random[16 * i : 16 * i + 16], version=4)) for i in range(count)]


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _record_rows(
    report: CheckReport,
    asker_id: int,
    patient_key: str,
    context: CheckContext,
) -> tuple[CheckRecord, list[CheckLineRecord], list[LineFact]]:
    """The check's row, its lines' rows as the record keeps them, and its lines as the
    statistics count them."""
    lines = [
        CheckLineRecord(
            check_id=report.check_id,
            line=number,
            ordered_code=checked.line.ordered_code[:64],
            item_code=checked.line.item.code if checked.line.item else "",
            verdict=checked.finding.verdict.value,
            reason=checked.finding.reason.text(report.language)[:500],
            result_ref=checked.cited.result_ref if checked.cited else "",
            result_version=checked.cited.version if checked.cited else 0,
            issuer_institution_id=checked.cited.institution_id if checked.cited else None,
            estimated_saving=yuan(checked.finding.saving_fen),
        )
        for number, checked in enumerate(report.lines)
    ]
    check = CheckRecord(
        id=report.check_id,
        institution_id=asker_id,
        patient_key=patient_key,
        received_at=report.received_at,
        catalog_version=report.catalog_version,
        order_id=context.order_id[:64],
        department=context.department[:64],
        emergency=context.emergency,
    )
    facts = [
        LineFact(
            check_id=report.check_id,
            asker_id=asker_id,
            issuer_id=line.issuer_institution_id,
            item_code=line.item_code,
            verdict=line.verdict,
            accepted=None,
            reason="",
            booked_saving="0",
        )
        for line in lines
    ]
    return check, lines, facts
