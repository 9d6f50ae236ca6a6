"""docs/protocol.md against two real agents on a real broker: every envelope they commit (to each
other and to the reconciler) is a declared step with its declared causation; a statement request
is answered as the protocol says, with the request as causation.

The reconciler here is the test itself, speaking as 000000 with its own login and key.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from agents.domain.case import State
from agents.tools.provision import AgencyProfile
from broker.names import RECONCILER_CODE
from broker.pytest_plugin import TestVhost
from schemas.protocol import STEPS
from schemas.reconciliation import LedgerStatementV1, Role, StatementRequestV1
from schemas.registry import Message
from tests.integration.agent_world import World, agent_world
from tests.integration.test_agent_branches import DONGGUAN, EMPLOYEE, JIUJIANG

pytestmark = pytest.mark.integration

DECLARED = {
    (s.role, s.message_type, s.peer, cause)
    for s in STEPS
    if s.action == "send"
    for cause in s.causations
}


def _observed(
    world: World, case_ids: list[uuid.UUID], roles: dict[str, str], known: dict[str, str]
) -> set[tuple[Any, ...]]:
    """(sender role, type, recipient role, causation's type) of every envelope the agents
    committed; ``known`` adds the types of messages no agent sent (the test's requests)."""
    envelopes = [
        sent.envelope for code in roles if code != RECONCILER_CODE for case in case_ids
        for sent in world.sent(code, case)
    ]
    types = {**known, **{e["message_id"]: e["type"] for e in envelopes}}
    return {
        (roles[e["sender"]], e["type"], roles[e["recipient"]], types.get(e["causation_id"]))
        for e in envelopes
    }


async def test_two_agents_send_what_the_protocol_declares_and_answer_statement_requests(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    async with agent_world(
        rabbitmq_vhost, tmp_path, [AgencyProfile(DONGGUAN), AgencyProfile(JIUJIANG)]
    ) as world:
        await world.start(DONGGUAN)
        await world.start(JIUJIANG)
        roles = {DONGGUAN: "outgoing", JIUJIANG: "receiving", RECONCILER_CODE: "reconciler"}

        out, _ = await world.mover(DONGGUAN, JIUJIANG, **EMPLOYEE)
        done = await world.apply(JIUJIANG, DONGGUAN, out)
        assert await world.wait_terminal(JIUJIANG, done) == State.COMPLETED
        assert await world.wait_terminal(DONGGUAN, done) == State.COMPLETED
        owing, _ = await world.mover(DONGGUAN, JIUJIANG, **{**EMPLOYEE, "arrears": True})
        refused = await world.apply(JIUJIANG, DONGGUAN, owing)
        assert await world.wait_terminal(JIUJIANG, refused) == State.REJECTED

        # The statement requests of the reconciler, and one for a case nobody knows.
        unknown = uuid.uuid4()
        requests: dict[uuid.UUID, tuple[str, uuid.UUID]] = {}
        async with world.impersonate(RECONCILER_CODE) as reconciler:
            for code, case in ((DONGGUAN, done), (JIUJIANG, done), (DONGGUAN, unknown)):
                sent = await reconciler.send(
                    StatementRequestV1(case_id=case), recipient=code, case_id=case
                )
                requests[sent.message_id] = (code, case)

        def answered(messages: list[Message]) -> bool:
            causes = {m.envelope.causation_id for m in messages if m.envelope.type == "ledger_statement"}
            return set(requests) <= causes

        inbox = await world.drain(RECONCILER_CODE, answered)
        statements = {
            m.envelope.causation_id: m for m in inbox if m.envelope.type == "ledger_statement"
        }
        for request_id, (code, case) in requests.items():
            answer = statements[request_id]
            assert answer.envelope.sender == code and answer.envelope.case_id == case
            document = answer.document
            assert isinstance(document, LedgerStatementV1)
            if case == unknown:
                assert not document.has_record
                assert (document.months, document.amount, document.paid_out) == (0, 0, 0)
            else:
                assert document.has_record
                assert document.role is (Role.OUTGOING if code == DONGGUAN else Role.RECEIVING)
                assert document.counterpart == (JIUJIANG if code == DONGGUAN else DONGGUAN)
                assert document.amount == out.balance_fen

        # The copies: form and completion of the completed case, the rejection of the other.
        copies = {(m.envelope.case_id, m.envelope.type, m.envelope.sender) for m in inbox}
        assert {
            (done, "information_form", DONGGUAN),
            (done, "transfer_completed", JIUJIANG),
            (refused, "rejection", DONGGUAN),
        } <= copies

        known = {str(request_id): "statement_request" for request_id in requests}
        observed = _observed(world, [done, refused, unknown], roles, known)
        assert observed <= DECLARED, observed - DECLARED
        for expected in (
            ("outgoing", "information_form", "reconciler", "contact_letter"),
            ("receiving", "transfer_completed", "reconciler", "information_form"),
            ("outgoing", "rejection", "reconciler", "contact_letter"),
            ("outgoing", "ledger_statement", "reconciler", "statement_request"),
            ("receiving", "ledger_statement", "reconciler", "statement_request"),
        ):
            assert expected in observed, expected
