"""The choices of command-line options, spelled without importing the models they stand for.

Importing `schemas` or the domain takes a few hundred milliseconds; ``jiexu --help`` must not. These
small enums carry the same values as the real ones (`tests/unit/test_cli_errors.py` holds them
equal); a command converts with ``.value``.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "CaseStateChoice",
    "GenderChoice",
    "InsuranceTypeChoice",
    "PayoutReasonChoice",
    "RegimeChoice",
    "ResolveDecision",
]


class GenderChoice(StrEnum):
    """`schemas.common.Gender`"""

    MALE = "male"
    FEMALE = "female"


class InsuranceTypeChoice(StrEnum):
    """`schemas.common.InsuranceType`"""

    EMPLOYEE = "310"
    RESIDENT = "390"


class PayoutReasonChoice(StrEnum):
    """`schemas.contact.PayoutReason`"""

    RETIREE_RESETTLED = "retiree_resettled"
    CANNOT_RECEIVE_FUNDS = "cannot_receive_funds"
    SCHEME_SWITCH = "scheme_switch"
    ENLISTMENT = "enlistment"
    DEATH = "death"
    EMIGRATION = "emigration"


class RegimeChoice(StrEnum):
    """`agents.domain.deadlines.Regime`"""

    R2016 = "2016"
    R2021 = "2021"


class CaseStateChoice(StrEnum):
    """`agents.domain.case.State`"""

    AWAITING_FORM = "awaiting_form"
    AWAITING_FUNDS = "awaiting_funds"
    CREDITING = "crediting"
    AWAITING_APPROVAL = "awaiting_approval"
    RELEASING = "releasing"
    AWAITING_COMPLETION = "awaiting_completion"
    COMPLETED = "completed"
    REJECTED = "rejected"
    DISCREPANCY = "discrepancy"
    CANCELLED = "cancelled"


class ResolveDecision(StrEnum):
    """`agents.domain.case.operator.DECISIONS`"""

    CREDIT_AS_RECEIVED = "credit_as_received"
    RETURN_FUNDS = "return_funds"
