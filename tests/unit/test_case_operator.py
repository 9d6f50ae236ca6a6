"""Cancel and resolve through the service, on the in-memory world: what each end does, and what
is refused (with the reason, nothing committed)."""

from __future__ import annotations

import pytest

from agents.domain.case import Role, State
from agents.service.operator import cancel, resolve
from agents.service.refusals import OperationRefused
from schemas.notices import RejectionReason, RejectionV2
from tests.unit.case_books import person, settle
from tests.unit.test_case_decide import DAY, OUT, pair


def test_cancel_ends_the_case_and_sends_withdrawn_which_after_release_stops_the_outgoing_end() -> None:
    world, receiving, outgoing = pair()
    case_id = receiving.apply_for(person(), OUT, DAY)
    outcome = receiving._call(case_id, cancel(receiving.service, case_id, "参保人放弃"))
    assert outcome.case is not None and outcome.case.state is State.CANCELLED
    assert outcome.case.rejection_reason is RejectionReason.WITHDRAWN
    withdrawal = [m.document for m in outcome.messages if isinstance(m.document, RejectionV2)]
    assert [d.reason_code for d in withdrawal if isinstance(d, RejectionV2)] == [RejectionReason.WITHDRAWN]

    # The letter was already on its way: the outgoing agency released, then learns of the
    # withdrawal; its case stops for its operator instead of waiting for a completion.
    world.pump()
    out_case = outgoing.case(case_id)
    assert out_case.state is State.DISCREPANCY and out_case.discrepancy is not None
    assert out_case.discrepancy.kind == "withdrawn"
    assert receiving.case(case_id).state is State.CANCELLED  # the late form changes nothing

    with pytest.raises(OperationRefused, match="already ended"):
        settle(cancel(receiving.service, case_id, "again"))
    with pytest.raises(OperationRefused, match="only the receiving agency"):
        settle(cancel(outgoing.service, case_id, "wrong end"))


def test_cancel_is_refused_once_the_form_has_arrived_and_resolve_only_takes_a_discrepancy() -> None:
    world, receiving, _outgoing = pair()
    receiving.run_commands = False  # the Credit stays pending: the case waits in crediting
    case_id = receiving.apply_for(person(), OUT, DAY)
    world.pump()
    assert receiving.case(case_id).state is State.CREDITING
    with pytest.raises(OperationRefused, match="already released"):
        settle(cancel(receiving.service, case_id, "too late"))
    with pytest.raises(OperationRefused, match="not in discrepancy"):
        settle(resolve(receiving.service, case_id, "credit_as_received", "x"))
    with pytest.raises(OperationRefused, match="unknown decision"):
        settle(resolve(receiving.service, case_id, "write_off", "x"))
    assert receiving.case(case_id).state is State.CREDITING
    assert receiving.case(case_id).role is Role.RECEIVING
