"""docs/protocol.md is the rendering of schemas/protocol.py, and what it says is what the code does.

The causation rules are checked on whole conversations run in memory through the real codec
(tests/unit/case_world.py): every message either agency sends must be a step the protocol
declares for its role, with the causation the protocol gives it.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from agents.domain.case.decision import _SENDS
from agents.domain.case.model import Role
from agents.service.agency import RECONCILER_COPIES as SERVICE_COPIES
from broker.consumer import DEFAULT_MAX_BODY_BYTES
from broker.properties import PROPERTY_RULES as BROKER_RULES
from schemas.notices import RejectionReason
from schemas.protocol import (
    BODY_LIMIT_BYTES,
    PROPERTY_RULES,
    RECEIPTED,
    RECONCILER_COPIES,
    STEPS,
    render_protocol,
    string_limits,
)
from schemas.registry import MODELS
from tests.unit.case_world import Sent, outgoing_account, person
from tests.unit.test_case_flows import OUT, make_world, short_pay

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def test_docs_protocol_md_is_the_rendering() -> None:
    assert DOC.read_text(encoding="utf-8") == render_protocol(), (
        "run `jiexu schemas protocol docs/protocol.md` and commit the result"
    )


def test_what_each_role_sends_its_counterpart_is_what_the_domain_sends() -> None:
    for role in (Role.RECEIVING, Role.OUTGOING):
        declared = {
            s.message_type
            for s in STEPS
            if s.role == role.value and s.action == "send" and s.peer != "reconciler"
        }
        # Receipts are the service's, for what it commits (section 9), not the case's decisions.
        assert declared - {"receipt"} == set(_SENDS[role]), role


def test_each_agency_acknowledges_every_case_document_the_other_sends() -> None:
    for role, peer in (("receiving", "outgoing"), ("outgoing", "receiving")):
        (sends,) = [s for s in STEPS if (s.role, s.action, s.message_type) == (role, "send", "receipt")]
        (takes,) = [
            s for s in STEPS if (s.role, s.action, s.message_type) == (role, "receive", "receipt")
        ]
        # What it acknowledges is what the other agency sends it, and the other way round.
        theirs = {s.message_type for s in STEPS if s.role == peer and s.action == "send" and s.peer == role}
        ours = {s.message_type for s in STEPS if s.role == role and s.action == "send" and s.peer == peer}
        assert set(sends.causations) == theirs - {"receipt"}
        assert set(takes.causations) == ours - {"receipt"}
        assert set(sends.causations) | set(takes.causations) <= set(RECEIPTED)


def test_the_copies_to_the_reconciler_are_the_services() -> None:
    assert set(RECONCILER_COPIES) == set(SERVICE_COPIES)
    for role in ("receiving", "outgoing"):
        sends = {
            s.message_type
            for s in STEPS
            if s.role == role and s.action == "send" and s.peer != "reconciler"
        }
        copies = {
            s.message_type
            for s in STEPS
            if s.role == role and s.action == "send" and s.peer == "reconciler"
        }
        assert copies == (sends & set(RECONCILER_COPIES)) | {"ledger_statement"}, role
    # What the reconciler accepts as copies is what agencies send it.
    accepted = {s.message_type for s in STEPS if s.role == "reconciler" and s.action == "receive"}
    assert accepted == set(RECONCILER_COPIES) | {"ledger_statement"}


def test_limits_and_properties_are_the_transports() -> None:
    assert BODY_LIMIT_BYTES == DEFAULT_MAX_BODY_BYTES
    assert PROPERTY_RULES == BROKER_RULES


def test_every_type_reason_and_limit_is_in_the_document() -> None:
    text = render_protocol()
    for message_type in MODELS:
        assert f"`{message_type}`" in text
    for reason in RejectionReason:
        assert f"`{reason.value}`" in text
    for path in string_limits():
        assert f"`{path}`" in text
    declared_reasons = {r for s in STEPS for r in s.reasons}
    # Every reason a rejection can carry is given by some step, except the receiving end's
    # local refusals (no message) that are named in its first step's text.
    assert declared_reasons | {RejectionReason.NOT_ENROLLED_AT_RECEIVING_PLACE} == set(RejectionReason)


def _declared_sends() -> set[tuple[str, str, str, str | None]]:
    return {
        (s.role, s.message_type, s.peer, cause)
        for s in STEPS
        if s.action == "send"
        for cause in s.causations
    }


def _record(log: list[Sent]) -> Any:
    def tamper(sent: Sent) -> Sent:
        log.append(sent)
        return sent

    return tamper


def _observed(log: list[Sent], roles: dict[str, str]) -> set[tuple[str, str, str, str | None]]:
    types = {sent.message.message_id: sent.message.document.MESSAGE_TYPE for sent in log}
    found = set()
    for sent in log:
        role = roles[sent.sender]
        peer = roles[sent.message.recipient]
        cause = sent.message.causation_id
        found.add((role, sent.message.document.MESSAGE_TYPE, peer, types.get(cause) if cause else None))
    return found


def _conversation(kind: str) -> set[tuple[str, str, str, str | None]]:
    who = person()
    changes: dict[str, Any] = {"arrears": 100} if kind == "arrears" else {}
    world, receiving, outgoing = make_world(outgoing_account(who, OUT, **changes), who=who)
    roles = {receiving.code: "receiving", outgoing.code: "outgoing"}
    log: list[Sent] = []
    record = _record(log)
    if kind == "reminders":
        receiving.run_commands = False
        receiving.apply_for(who, OUT, world.today)
        pending = list(receiving.outbox)
        receiving.outbox.clear()
        receiving.tick(world.today + timedelta(days=60))  # the letter "lost": the form is late
        log.extend(pending)
        log.extend(receiving.outbox)
        receiving.outbox.clear()
        world.agents[receiving.code].outbox.extend(pending)
        world.pump(tamper=record)
        world.tick(world.today + timedelta(days=120))  # the completion is late now
        world.pump(tamper=record)
        return _observed(log, roles)
    receiving.apply_for(who, OUT, world.today)
    if kind == "short_pay":
        world.pump(tamper=lambda sent: record(short_pay(sent)))
    else:
        world.pump(tamper=record)
    return _observed(log, roles)


@pytest.mark.parametrize("kind", ["normal", "arrears", "short_pay", "reminders"])
def test_every_message_sent_in_a_conversation_is_a_declared_step_with_its_causation(kind: str) -> None:
    observed = _conversation(kind)
    assert observed, "the conversation sent nothing"
    assert observed <= _declared_sends(), observed - _declared_sends()


def test_the_conversations_cover_every_declared_send_between_agencies() -> None:
    observed: set[tuple[str, str, str, str | None]] = set()
    for kind in ("normal", "arrears", "short_pay", "reminders"):
        observed |= _conversation(kind)
    between_agencies = {d for d in _declared_sends() if d[2] in ("receiving", "outgoing")}
    # Not reached in memory: the receiving agency refusing a form (invalid_document) or its books
    # refusing the credit; both carry the form's id like the amount mismatch found form-last. A
    # withdrawal (`jiexu case cancel`, causation the letter) is an operator's act, proven end to end
    # with real agents in tests/e2e/test_front_office.py.
    # The receiving agency's reminder is logged but not delivered in the reminders conversation
    # (its letter is "lost"), so the outgoing receipt for a reminder is not reached either.
    assert between_agencies - observed <= {
        ("receiving", "rejection", "outgoing", "information_form"),
        ("receiving", "rejection", "outgoing", "contact_letter"),
        ("outgoing", "receipt", "receiving", "reminder"),
    }


def test_the_cli_writes_the_protocol(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from agents.cli import app

    result = CliRunner().invoke(app, ["schemas", "protocol", str(tmp_path / "protocol.md")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "protocol.md").read_text(encoding="utf-8") == render_protocol()


def test_the_asyncapi_document_has_an_operation_per_role_step_and_describes_each_message() -> None:
    import yaml

    document = yaml.safe_load(
        (DOC.parents[1] / "schemas" / "asyncapi.yaml").read_text(encoding="utf-8")
    )
    operations = document["operations"]
    for step in STEPS:
        operation = operations[f"{step.role}.{step.action}.{step.message_type}.{step.peer}"]
        assert operation["action"] == step.action
        for cause in step.causations:
            assert (f"the {cause}'s message_id" if cause else "null") in operation["description"]
    for key, message in document["components"]["messages"].items():
        assert message["description"], key
