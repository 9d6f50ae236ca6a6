"""The service's admission checks (issue 13): freshness of ``sent_at``, inbox retention that follows
from it, and security events logged at WARNING."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from agents.domain.clock import CHINA_TZ
from broker.signing import sign_envelope
from schemas.errors import ContractError
from schemas.notices import OverdueStep, ReminderV1
from schemas.reconciliation import StatementRequestV1
from schemas.registry import Message, encode_envelope, envelope_for, parse
from tests.unit.case_world import (
    Agent,
    Books,
    WeekdayCalendar,
    World,
    agency,
    outgoing_account,
    person,
    receiving_account,
    settle,
    signing_key,
)

OUT, IN = "360400", "110000"
DAY = date(2025, 3, 3)


def _pair() -> tuple[World, Agent, Agent]:
    who = person()
    calendar = WeekdayCalendar()
    receiving = Agent(agency(IN), Books(IN, {who.id_number: receiving_account(who, IN)}), calendar)
    outgoing = Agent(agency(OUT), Books(OUT, {who.id_number: outgoing_account(who, OUT)}), calendar)
    return World.of(receiving, outgoing), receiving, outgoing


def _reminder(sender: str, recipient: str, case_id: UUID, sent_at: datetime, message_id: UUID) -> Message:
    envelope = envelope_for(
        ReminderV1(overdue_step=OverdueStep.INFORMATION_FORM, waiting_since=DAY, due_on=DAY),
        sender=sender,
        recipient=recipient,
        case_id=case_id,
        message_id=message_id,
        sent_at=sent_at,
    )

    return parse(encode_envelope(sign_envelope(envelope, signing_key(sender))))


@pytest.mark.parametrize(
    "sent_at",
    [
        datetime(2025, 1, 31, 9, tzinfo=CHINA_TZ),  # 31 days before the agent's clock
        datetime(2025, 3, 3, 9, 15, tzinfo=CHINA_TZ),  # 15 minutes ahead of it
    ],
)
def test_a_message_outside_the_freshness_window_is_refused_as_stale_and_records_nothing(
    sent_at: datetime,
) -> None:
    _world, receiving, _outgoing = _pair()
    case_id = receiving.apply_for(person(), OUT, DAY)
    message_id = uuid4()
    with pytest.raises(ContractError) as refused:
        receiving.receive(_reminder(OUT, IN, case_id, sent_at, message_id), DAY)
    assert refused.value.reason == "stale"
    assert not settle(receiving.store.has_handled("agent", message_id, sender=OUT))


def test_a_message_within_the_window_is_handled() -> None:
    _world, receiving, _outgoing = _pair()
    case_id = receiving.apply_for(person(), OUT, DAY)
    message_id = uuid4()
    sent_at = datetime(2025, 2, 3, 9, tzinfo=CHINA_TZ)  # 28 days old
    receiving.receive(_reminder(OUT, IN, case_id, sent_at, message_id), DAY)
    assert settle(receiving.store.has_handled("agent", message_id, sender=OUT))


def test_the_deadline_round_prunes_inbox_rows_older_than_the_window() -> None:
    _world, receiving, _outgoing = _pair()
    case_id = receiving.apply_for(person(), OUT, DAY)
    old = uuid4()
    receiving.receive(_reminder(OUT, IN, case_id, datetime(2025, 3, 3, 8, tzinfo=CHINA_TZ), old), DAY)
    receiving.tick(DAY + timedelta(days=20))
    assert settle(receiving.store.has_handled("agent", old, sender=OUT)), "kept within the window"
    receiving.tick(DAY + timedelta(days=31))
    assert not settle(receiving.store.has_handled("agent", old, sender=OUT)), "pruned after it"


def test_a_statement_request_from_anyone_but_the_reconciler_is_refused() -> None:
    _world, receiving, _outgoing = _pair()
    receiving.service.reconciler = "000000"
    case_id = receiving.apply_for(person(), OUT, DAY)
    envelope = envelope_for(
        StatementRequestV1(case_id=case_id),
        sender=OUT,
        recipient=IN,
        case_id=case_id,
        sent_at=datetime(2025, 3, 3, 9, tzinfo=CHINA_TZ),
    )

    message = parse(encode_envelope(sign_envelope(envelope, signing_key(OUT))))
    with pytest.raises(ContractError) as refused:
        receiving.receive(message, DAY)
    assert refused.value.reason == "wrong_sender"
    assert receiving.service.stats.statements == 0
    assert [s for s in receiving.outbox if s.message.document.MESSAGE_TYPE == "ledger_statement"] == []


def test_security_notes_are_logged_at_warning() -> None:
    _world, receiving, _outgoing = _pair()
    unknown = uuid4()
    receiving.receive(_reminder(OUT, IN, unknown, datetime(2025, 3, 3, 8, tzinfo=CHINA_TZ), uuid4()), DAY)
    (entry,) = [e for e in receiving.logs if e["event"] == "case.unknown_case"]
    assert entry["log_level"] == "warning"
