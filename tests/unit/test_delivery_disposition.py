"""The one delivery disposition: what ack, retry and dead-letter each outcome gets (no broker)."""

from __future__ import annotations

import uuid

from broker.consumer import Ack, ConsumerSettings, DeadLetter, RecentMessageIds, Retry, dispose
from schemas.errors import ContractError, DomainRuleViolation, TransientError

DELAYS = (1000, 5000, 30000)


def _dispose(error: BaseException | None, attempt: int = 1, max_attempts: int = 4) -> object:
    return dispose(error, attempt=attempt, retry_delays_ms=DELAYS, max_attempts=max_attempts)


def test_a_handled_message_is_acked() -> None:
    assert _dispose(None) == Ack()


def test_a_contract_error_is_dead_lettered_with_its_reason_and_never_retried() -> None:
    disposition = _dispose(ContractError("bad_signature", "signed with another key"))
    assert disposition == DeadLetter("bad_signature", "signed with another key")


def test_an_escaped_domain_rule_violation_is_dead_lettered_as_a_handler_failure() -> None:
    disposition = _dispose(DomainRuleViolation("arrears", "unpaid months"))
    assert isinstance(disposition, DeadLetter)
    assert disposition.reason == "handler_failed" and "arrears" in disposition.detail


def test_transient_and_unexpected_errors_are_retried_with_growing_delays() -> None:
    assert _dispose(TransientError("busy"), attempt=1) == Retry(2, 1000, "TransientError: busy")
    assert _dispose(KeyError("x"), attempt=2) == Retry(3, 5000, "KeyError: 'x'")
    assert _dispose(RuntimeError("boom"), attempt=3) == Retry(4, 30000, "RuntimeError: boom")


def test_the_last_delay_repeats_when_attempts_outnumber_delays() -> None:
    disposition = _dispose(RuntimeError("boom"), attempt=5, max_attempts=9)
    assert disposition == Retry(6, 30000, "RuntimeError: boom")


def test_after_the_last_attempt_the_failure_is_dead_lettered_as_handler_failed() -> None:
    disposition = _dispose(TransientError("still busy"), attempt=4, max_attempts=4)
    assert isinstance(disposition, DeadLetter)
    assert disposition.reason == "handler_failed"
    assert "4 attempt(s)" in disposition.detail and "still busy" in disposition.detail


def test_default_attempts_are_one_more_than_the_delays() -> None:
    assert ConsumerSettings(retry_delays_ms=(100, 200)).attempts == 3
    assert ConsumerSettings(retry_delays_ms=(100, 200), max_attempts=7).attempts == 7


async def test_the_default_replay_check_remembers_a_bounded_number_of_ids() -> None:
    recent = RecentMessageIds(capacity=2)
    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    assert not await recent(first)
    for message_id in (first, second, third):
        recent.remember(message_id)
    assert not await recent(first), "the oldest id is forgotten"
    assert await recent(second) and await recent(third)
