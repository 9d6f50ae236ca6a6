"""The reconciler's decision, pure: a case record and one event in, the next record and what to send out.

`reconcile_step` is to the reconciler what `agents.domain.decide` is to an agency. It reads the
`ReconciledCase` it is given (never changes it), and returns a `Plan`: the new record, the
statement requests to remember, the envelopes to queue (statement requests and reconciliation
results, with ids derived from their content so that a repeat carries the same id) and the log
lines to write. No I/O, no clock, no logging: `agents.reconcile.service` does those.

The events:

* `FormCopy`: the outgoing agency's copy of its information form.
* `TerminalCopy`: a copy of the completion notice or of a rejection: the case ended, a *final*
  round of statement requests goes to every agency known in the case.
* `StatementCopy`: a ledger statement, with the request it answers (looked up by the service
  from the envelope's ``causation_id``; None when unknown).
* `SweepTick`: the sweep of one case at ``today``: a case with money in flight and no terminal
  notice, or a terminal case without a result, past the form-to-completion limit of the regime
  in working days, is flagged (``overdue_since``), probed or re-requested; a terminal case
  whose only missing piece is the form copy is compared without it.

Who the parties are: no document makes an agency a party on its own say-so. A signed document is
a *claim* (a form copy: "I am the outgoing agency"; a completion: "I am the receiving one"; a
statement: "I am this side, that agency is the other"); every claimant and every agency named as a
counterpart is asked for its statement. The outgoing and receiving agencies are *confirmed* only
when each one's signed statement names the other, in the role the other claimed: until then they
are provisional and nothing is compared; then an agency that does not fit is dropped and reported
(``reconcile.party_not_corroborated``), its documents ignored, and only the outgoing agency's own
form copy is compared. A stranger's form copy no longer makes it the outgoing agency.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal
from uuid import UUID, uuid5

from agents.domain.clock import CHINA_TZ
from agents.domain.deadlines import Regime, Step, due_date, is_overdue
from agents.domain.policy import REMINDER_INTERVAL_WORKING_DAYS
from agents.domain.workdays import WorkdayCalendar
from agents.reconcile.compare import compare
from agents.reconcile.records import (
    FormClaim,
    Purpose,
    ReconciledCase,
    RequestRow,
    StoredStatement,
    Terminal,
)
from schemas.envelope import Envelope
from schemas.information import InformationFormV2
from schemas.reconciliation import (
    LedgerStatementV1,
    ReconciliationOutcome,
    ReconciliationResultV1,
    Role,
    StatementRequestV1,
)
from schemas.registry import envelope_for

__all__ = [
    "ID_NAMESPACE",
    "Event",
    "FormCopy",
    "LogLine",
    "Plan",
    "Rules",
    "StatementCopy",
    "SweepTick",
    "TerminalCopy",
    "reconcile_step",
]

ID_NAMESPACE = UUID("6f0c2f1e-5a9b-4c7d-8e3f-000000000000")
"""Namespace of the reconciler's content-derived message ids (uuid5)."""


@dataclass(frozen=True)
class Rules:
    """What the decision depends on besides the record and the event."""

    code: str
    calendar: WorkdayCalendar
    regime: Regime = Regime.R2021
    """Whose form-to-completion limit makes a case overdue (5 working days in 2021, 15 in 2016)."""
    repeat_working_days: int = REMINDER_INTERVAL_WORKING_DAYS
    """Working days between two probes (or re-requests) of the same overdue case."""


@dataclass(frozen=True)
class FormCopy:
    envelope: Envelope
    form: InformationFormV2


@dataclass(frozen=True)
class TerminalCopy:
    envelope: Envelope
    kind: Terminal
    reason: str | None = None


@dataclass(frozen=True)
class StatementCopy:
    envelope: Envelope
    statement: LedgerStatementV1
    request: RequestRow | None = None
    """The request this statement answers (by ``causation_id``), as the reconciler recorded it."""


@dataclass(frozen=True)
class SweepTick:
    """The sweep looking at one case."""


Event = FormCopy | TerminalCopy | StatementCopy | SweepTick


@dataclass(frozen=True)
class LogLine:
    level: Literal["info", "warning"]
    event: str
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """What one event does to one case."""

    record: ReconciledCase
    changed: bool = True
    """False when nothing is to be saved (a sweep of a case that is not overdue)."""
    requests: tuple[RequestRow, ...] = ()
    envelopes: tuple[Envelope, ...] = ()
    """To queue, in order: statement requests, then results."""
    logs: tuple[LogLine, ...] = ()
    compared: bool = False
    """A new result was recorded."""


def reconcile_step(
    record: ReconciledCase, event: Event, rules: Rules, *, now: datetime, today: date
) -> Plan:
    """The next record of ``record`` after ``event`` at ``now`` (``today`` in China)."""
    return _Step(record.model_copy(deep=True), rules, now, today).run(event)


def _china_day(moment: datetime) -> date:
    return moment.astimezone(CHINA_TZ).date()


class _Step:
    """Works on a private copy of the record, collecting what is to be sent and logged."""

    def __init__(self, record: ReconciledCase, rules: Rules, now: datetime, today: date) -> None:
        if not record.claims:  # a record from before claims were kept: its parties as claims
            for code, role in ((record.outgoing, Role.OUTGOING), (record.receiving, Role.RECEIVING)):
                if code is not None:
                    record.claims[code] = role
            if record.form is not None and record.outgoing and record.form_sent_on is not None:
                record.form_claims[record.outgoing] = FormClaim(
                    form=record.form, sent_on=record.form_sent_on
                )
        self.record = record
        self.rules = rules
        self.now = now
        self.today = today
        self.requests: list[RequestRow] = []
        self.envelopes: list[Envelope] = []
        self.logs: list[LogLine] = []
        self.compared = False

    def _log(self, level: Literal["info", "warning"], event: str, **fields: Any) -> None:
        self.logs.append(LogLine(level, event, fields))

    def run(self, event: Event) -> Plan:
        changed = True
        if isinstance(event, FormCopy):
            self._on_form(event.envelope, event.form)
        elif isinstance(event, TerminalCopy):
            self._on_terminal(event.envelope, event.kind, event.reason)
        elif isinstance(event, StatementCopy):
            self._on_statement(event.envelope, event.statement, event.request)
        else:
            changed = self._sweep()
        if changed:
            self._settle()
            self._advance()
        return Plan(
            record=self.record,
            changed=changed,
            requests=tuple(self.requests),
            envelopes=tuple(self.envelopes),
            logs=tuple(self.logs),
            compared=self.compared,
        )

    # -- the documents ----------------------------------------------------------------------------
    def _on_form(self, envelope: Envelope, form: InformationFormV2) -> None:
        record = self.record
        sender = envelope.sender
        if record.confirmed and sender != record.outgoing:
            self._log("warning", "reconcile.form_from_stranger", sender=sender, outgoing=record.outgoing)
            return
        known = record.form_claims.get(sender)
        if known is not None:
            if known.form != form:
                self._log("warning", "reconcile.second_form_differs", sender=sender, kept="first")
            return
        record.form_claims[sender] = FormClaim(form=form, sent_on=_china_day(envelope.sent_at))
        self._assign(sender, Role.OUTGOING, source="information_form")

    def _on_terminal(self, envelope: Envelope, kind: Terminal, reason: str | None) -> None:
        record = self.record
        if record.confirmed and envelope.sender not in (record.outgoing, record.receiving):
            self._log("warning", "reconcile.notice_from_stranger", sender=envelope.sender, notice=kind)
            return
        if kind == "transfer_completed":
            self._assign(envelope.sender, Role.RECEIVING, source="transfer_completed")
        else:
            self._learn(envelope.sender)
        if record.terminal is not None:
            if record.terminal != kind or record.terminal_by != envelope.sender:
                self._log(
                    "warning",
                    "reconcile.second_terminal_notice",
                    first=record.terminal,
                    first_by=record.terminal_by,
                    now=kind,
                    now_by=envelope.sender,
                    kept="first",
                )
            return
        record.terminal = kind
        record.terminal_by = envelope.sender
        record.terminal_on = _china_day(envelope.sent_at)
        record.rejection_reason = reason
        self._new_round("final")
        self._log("info", "reconcile.case_ended", terminal=kind, by=envelope.sender, reason=reason)

    def _on_statement(
        self, envelope: Envelope, statement: LedgerStatementV1, request: RequestRow | None
    ) -> None:
        record = self.record
        sender = envelope.sender
        if statement.case_id != envelope.case_id:
            self._log(
                "warning", "reconcile.statement_for_other_case", statement_case=str(statement.case_id)
            )
            return
        if record.confirmed and sender not in (record.outgoing, record.receiving):
            self._log("warning", "reconcile.statement_from_stranger", sender=sender)
            return
        if request is not None and (request.case_id != record.case_id or request.recipient != sender):
            request = None
        final = request.purpose == "final" if request is not None else record.terminal is not None
        existing = record.statements.get(sender)
        if existing is not None and existing.final and not final:
            return  # a late answer to a probe never replaces an answer given after the case ended
        record.statements[sender] = StoredStatement(
            statement=statement, final=final, message_id=envelope.message_id, received_at=self.now
        )
        # The books' word on the sender's own side replaces what a notice or form copy claimed.
        record.claims[sender] = statement.role
        self._learn(sender)
        if statement.counterpart != sender and statement.counterpart != self.rules.code:
            record.counterparts[sender] = statement.counterpart
            self._learn(statement.counterpart)  # asked for its statement, not given a part

    # -- parties and roles ------------------------------------------------------------------------
    def _learn(self, code: str) -> None:
        """``code`` is a candidate party: it will be asked for its statement."""
        record = self.record
        if code == self.rules.code or code in record.parties:
            return
        if record.confirmed and code not in (record.outgoing, record.receiving):
            self._log("warning", "reconcile.third_agency", agency=code)
            return
        record.parties.append(code)

    def _assign(self, code: str, role: Role, *, source: str) -> None:
        """``code`` claims ``role`` in a document it signed (a form copy, a completion): a claim,
        kept unless its statement already said otherwise; `_settle` decides who the parties are."""
        record = self.record
        if code == self.rules.code:
            self._log("warning", "reconcile.reconciler_named_as_party", role=role.value, source=source)
            return
        claimed = record.claims.setdefault(code, role)
        if claimed is not role:
            self._log(
                "warning", "reconcile.role_conflict", agency=code, role=role.value,
                known=claimed.value, source=source,
            )
        self._learn(code)

    def _settle(self) -> None:
        """Who the outgoing and receiving agencies are, from what both sides corroborate."""
        record = self.record
        if not record.confirmed:
            pair = self._corroborated()
            if pair is not None:
                record.outgoing, record.receiving = pair
                record.confirmed = True
                dropped = [code for code in record.parties if code not in pair]
                record.parties = [code for code in record.parties if code in pair]
                record.final_asked = [c for c in record.final_asked if c in pair]
                record.probe_asked = [c for c in record.probe_asked if c in pair]
                for code in dropped:
                    self._log(
                        "warning",
                        "reconcile.party_not_corroborated",
                        agency=code,
                        claimed=record.claims[code].value if code in record.claims else None,
                        outgoing=pair[0],
                        receiving=pair[1],
                    )
            else:
                outgoing, receiving = self._sole(Role.OUTGOING), self._sole(Role.RECEIVING)
                # Provisional, for the views and the sweep: a side nobody claims may be the one
                # the other side's statement names.
                if receiving is None and outgoing is not None:
                    receiving = self._named_by(outgoing, Role.RECEIVING)
                if outgoing is None and receiving is not None:
                    outgoing = self._named_by(receiving, Role.OUTGOING)
                record.outgoing, record.receiving = outgoing, receiving
        claim = record.form_claims.get(record.outgoing) if record.outgoing else None
        if claim is None and not record.confirmed and record.form_claims:
            claim = next(iter(record.form_claims.values()))  # contested: the first, for the sweep
        record.form = claim.form if claim is not None else None
        record.form_sent_on = claim.sent_on if claim is not None else None

    def _corroborated(self) -> tuple[str, str] | None:
        record = self.record
        for code, role in record.claims.items():
            other = record.counterparts.get(code)
            if role is not Role.OUTGOING or other is None:
                continue
            if record.claims.get(other) is Role.RECEIVING and record.counterparts.get(other) == code:
                return code, other
        return None

    def _named_by(self, code: str, role: Role) -> str | None:
        """The counterpart ``code``'s statement names, unless someone claims it for another role."""
        named = self.record.counterparts.get(code)
        if named is None or self.record.claims.get(named, role) is not role:
            return None
        if any(claimed is role for other, claimed in self.record.claims.items() if other != named):
            return None
        return named

    def _sole(self, role: Role) -> str | None:
        claimants = [code for code, claimed in self.record.claims.items() if claimed is role]
        return claimants[0] if len(claimants) == 1 else None

    # -- requests, comparison, results ------------------------------------------------------------
    def _new_round(self, purpose: Purpose) -> None:
        record = self.record
        if purpose == "final":
            record.final_round += 1
            record.final_asked = []
        else:
            record.probe_round += 1
            record.probe_asked = []
        record.last_request_on = self.today

    def _advance(self) -> None:
        """Ask every known agency not yet asked in the current round; compare if everything is in."""
        record = self.record
        rounds: list[tuple[Purpose, int, list[str]]] = []
        if record.terminal is not None and record.final_round:
            rounds.append(("final", record.final_round, record.final_asked))
        elif record.terminal is None and record.probe_round:
            rounds.append(("probe", record.probe_round, record.probe_asked))
        for purpose, number, asked in rounds:
            for party in list(record.parties):
                if party in asked:
                    continue
                envelope = self._request_envelope(party, purpose, number)
                self.requests.append(
                    RequestRow(envelope.message_id, record.case_id, party, purpose, number)
                )
                self.envelopes.append(envelope)
                asked.append(party)
        self._try_compare()

    def _request_envelope(self, recipient: str, purpose: Purpose, number: int) -> Envelope:
        case_id = self.record.case_id
        return envelope_for(
            StatementRequestV1(case_id=case_id),
            sender=self.rules.code,
            recipient=recipient,
            case_id=case_id,
            message_id=uuid5(ID_NAMESPACE, f"{case_id}/statement_request/{purpose}/{number}/{recipient}"),
            sent_at=self.now,
        )

    def _try_compare(self) -> None:
        record = self.record
        outgoing, receiving = record.outgoing, record.receiving
        if outgoing is None or receiving is None or not record.confirmed:
            return
        if record.terminal is None:
            if record.probe_round:
                out_probe = record.statement_of(outgoing, final=False)
                in_probe = record.statement_of(receiving, final=False)
                if out_probe is not None and in_probe is not None:
                    record.probe_result = compare(
                        record.case_id, outgoing, receiving, record.form, out_probe, in_probe
                    )
            return
        out_statement = record.statement_of(outgoing)
        in_statement = record.statement_of(receiving)
        if out_statement is None or in_statement is None:
            return
        if record.form is None and out_statement.has_record and not record.form_wait_over:
            # The outgoing books hold the case, so a form was certified: its copy may be on the way.
            return
        result = compare(record.case_id, outgoing, receiving, record.form, out_statement, in_statement)
        if record.result == result:
            return
        record.result = result
        record.checked_at = self.now
        record.day = record.terminal_on
        self.compared = True
        for recipient in (outgoing, receiving):
            stored = record.statements.get(recipient)
            self.envelopes.append(
                self._result_envelope(result, recipient, stored.message_id if stored else None)
            )
        if result.outcome is ReconciliationOutcome.MATCHED:
            self._log("info", "reconcile.matched", outgoing=outgoing, receiving=receiving)
        else:
            self._log(
                "warning",
                "reconcile.mismatched",
                outgoing=outgoing,
                receiving=receiving,
                differences=[d.model_dump() for d in result.differences],
                terminal=record.terminal,
                rejection_reason=record.rejection_reason,
            )

    def _result_envelope(
        self, result: ReconciliationResultV1, recipient: str, causation_id: UUID | None
    ) -> Envelope:
        digest = hashlib.sha256(result.model_dump_json().encode("utf-8")).hexdigest()
        return envelope_for(
            result,
            sender=self.rules.code,
            recipient=recipient,
            case_id=result.case_id,
            causation_id=causation_id,
            message_id=uuid5(ID_NAMESPACE, f"{result.case_id}/reconciliation_result/{recipient}/{digest}"),
            sent_at=self.now,
        )

    # -- the sweep --------------------------------------------------------------------------------
    def _sweep(self) -> bool:
        """Flag, probe or re-request the case; False when it is not overdue (nothing changes)."""
        record, rules, today = self.record, self.rules, self.today
        if record.result is not None:
            return False
        if record.terminal is None:
            form = record.form
            if form is None or form.amount_transferred <= 0 or record.form_sent_on is None:
                return False
            started = record.form_sent_on
        else:
            if record.terminal_on is None:
                return False
            started = record.terminal_on
        due = due_date(rules.regime, Step.FORM_TO_COMPLETION, started, rules.calendar)
        if not is_overdue(due, today):
            return False
        context = {
            "case_id": str(record.case_id),
            "outgoing": record.outgoing,
            "receiving": record.receiving,
            "due_on": due.isoformat(),
            "overdue_since": (record.overdue_since or today).isoformat(),
        }
        if record.overdue_since is None:
            record.overdue_since = today
        repeat = record.last_request_on is None or (
            rules.calendar.working_days_between(record.last_request_on, today)
            >= rules.repeat_working_days
        )
        if record.terminal is None:
            assert record.form is not None
            self._log(
                "warning",
                "reconcile.money_in_flight_overdue",
                amount_transferred=record.form.amount_transferred,
                **context,
            )
            if record.probe_round == 0 or repeat:
                self._new_round("probe")
        else:
            missing = [
                code
                for code in (record.outgoing, record.receiving)
                if code is None or record.statement_of(code) is None
            ]
            self._log(
                "warning",
                "reconcile.result_overdue",
                terminal=record.terminal,
                waiting_for_statements=missing,
                waiting_for_form=record.form is None,
                **context,
            )
            if not missing and record.form is None:
                record.form_wait_over = True
                self._try_compare()
            elif repeat:
                self._new_round("final")
        return True
