"""transfer_completed v2: the continuity the receiving agency decided, and v1 still served."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agents.domain.continuity import ContinuityOutcome as DomainOutcome
from schemas.examples import EXAMPLES
from schemas.notices import (
    ContinuityNotice,
    ContinuityOutcome,
    TransferCompletedV1,
    TransferCompletedV2,
)
from schemas.registry import downcast, known_versions, negotiate_version, upcast

V2 = EXAMPLES[("transfer_completed", 2)]


def test_both_versions_are_registered_and_a_v1_recipient_negotiates_v1() -> None:
    assert known_versions("transfer_completed") == (1, 2)
    assert negotiate_version("transfer_completed", (1,)) == 1
    assert negotiate_version("transfer_completed", (1, 2)) == 2


def test_downcast_to_v1_keeps_the_figures_and_drops_the_continuity() -> None:
    old = downcast(V2, 1)
    assert type(old) is TransferCompletedV1
    assert old.model_dump() == V2.model_dump(exclude={"continuity"})


def test_a_v1_notice_upcasts_with_continuity_not_stated() -> None:
    new = upcast(EXAMPLES[("transfer_completed", 1)])
    assert isinstance(new, TransferCompletedV2)
    assert new.continuity is None


def test_the_wire_outcomes_are_the_domains() -> None:
    assert [o.value for o in ContinuityOutcome] == [o.value for o in DomainOutcome]


_KEPT = {
    "participation_end": "2025-12",
    "enrolment_start": "2026-01",
    "gap_months": 0,
    "outcome": "kept",
    "back_payment_months": [],
    "waiting_months": 0,
    "benefits_from": "2026-01",
}


@pytest.mark.parametrize(
    "changes",
    [
        {"gap_months": 2},  # kept with a gap
        {"outcome": "broken"},  # broken without one
        {"outcome": "kept_with_back_payment", "gap_months": 4, "back_payment_months": ["2026-01"] * 3},
        {"outcome": "kept_with_back_payment", "gap_months": 2, "back_payment_months": ["2026-01"]},
        {"waiting_months": 3},  # a waiting period without a break
        {"outcome": "broken", "gap_months": 5, "waiting_months": 7},  # beyond 6 months
        {"benefits_from": "2025-12"},  # before the enrolment
    ],
)
def test_a_notice_that_contradicts_itself_is_refused(changes: dict[str, object]) -> None:
    ContinuityNotice.model_validate(_KEPT)
    with pytest.raises(ValidationError):
        ContinuityNotice.model_validate({**_KEPT, **changes})
