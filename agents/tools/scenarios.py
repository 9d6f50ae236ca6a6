"""The transfer scenarios the demo and the bench run: agencies, branches, people and applications.

`BRANCHES` are the paths through domain.md (a normal transfer, zero balance, Guangdong within the
province, payouts, scheme switches, mixed message versions, every rejection); `plan_transfers`
cycles through them over a set of agencies and says whom to seed in which ledger;
`applications_for` makes the application(s) of one planned transfer and `expected_outcome` says
how its case must end.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from agents.domain.case import ApplicationSubmitted
from agents.domain.deadlines import Regime
from agents.ledger.base import PersonAccount
from agents.tools.provision import AgencyProfile
from agents.tools.seed import make_mover
from schemas.common import BankAccount, InsuranceType, Person
from schemas.contact import PayoutReason

__all__ = [
    "AGENCY_ORDER",
    "BRANCHES",
    "V1_AGENCY",
    "Branch",
    "Planned",
    "applications_for",
    "choose_agencies",
    "expected_outcome",
    "plan_transfers",
]

AGENCY_ORDER = (
    "441900",  # 东莞 (Guangdong)
    "360400",  # 九江
    "440300",  # 深圳 (Guangdong)
    "110000",  # 北京
    "540100",  # 拉萨: still on version 1 of every message
    "410100",  # 郑州
    "320100",  # 南京
    "310000",  # 上海
    "510100",  # 成都
    "440100",  # 广州 (Guangdong)
)
V1_AGENCY = "540100"

@dataclass(frozen=True)
class Branch:
    """One path through domain.md: how to seed the person and what the case should end in."""

    name: str
    expected: str
    """Terminal state at the receiving agency (``rejected:<reason>`` for a rejection)."""
    outgoing_options: dict[str, Any] = field(default_factory=dict)
    receiving_type: InsuranceType | None = None
    receiving_enrolled: bool = True
    seed_outgoing: bool = True
    payout: PayoutReason | None = None
    guangdong: bool = False
    v1_side: bool = False
    duplicate: bool = False


_EMPLOYEE = {"insurance_type": InsuranceType.EMPLOYEE, "retiree": False, "arrears": False}

BRANCHES: tuple[Branch, ...] = (
    Branch("normal", "completed", {**_EMPLOYEE, "zero_balance": False}),
    Branch("zero_balance", "completed", {**_EMPLOYEE, "zero_balance": True}),
    Branch("guangdong_in_province", "completed", {**_EMPLOYEE, "zero_balance": False}, guangdong=True),
    Branch(
        "payout_retiree_resettled",
        "completed",
        {**_EMPLOYEE, "retiree": True, "zero_balance": False},
        payout=PayoutReason.RETIREE_RESETTLED,
    ),
    Branch(
        "resident",
        "completed",
        {"insurance_type": InsuranceType.RESIDENT, "retiree": False, "arrears": False},
        receiving_type=InsuranceType.RESIDENT,
    ),
    Branch(
        "switch_employee_to_resident",
        "completed",
        {**_EMPLOYEE, "zero_balance": False},
        receiving_type=InsuranceType.RESIDENT,
        payout=PayoutReason.SCHEME_SWITCH,
    ),
    Branch(
        "switch_resident_to_employee",
        "completed",
        {"insurance_type": InsuranceType.RESIDENT, "retiree": False, "arrears": False},
        receiving_type=InsuranceType.EMPLOYEE,
    ),
    Branch("mixed_versions_v1_agency", "completed", {**_EMPLOYEE, "zero_balance": False}, v1_side=True),
    Branch("rejected_arrears", "rejected:arrears", {**_EMPLOYEE, "arrears": True}),
    Branch(
        "rejected_participation_not_stopped",
        "rejected:participation_not_stopped",
        {**_EMPLOYEE, "participation": "active"},
    ),
    Branch(
        "rejected_not_enrolled_here",
        "rejected:not_enrolled_at_receiving_place",
        _EMPLOYEE,
        receiving_enrolled=False,
    ),
    Branch("rejected_unknown_person", "rejected:unknown_person", _EMPLOYEE, seed_outgoing=False),
    Branch("rejected_retiree", "rejected:retiree", {**_EMPLOYEE, "retiree": True}),
    Branch("rejected_duplicate_application", "rejected:duplicate_case", _EMPLOYEE, duplicate=True),
)


def choose_agencies(n: int) -> list[AgencyProfile]:
    if not 3 <= n <= len(AGENCY_ORDER):
        raise ValueError(f"--agencies must be between 3 and {len(AGENCY_ORDER)}")
    profiles = []
    for i, code in enumerate(AGENCY_ORDER[:n]):
        regime = Regime.R2021 if i % 2 == 0 else Regime.R2016
        if code == V1_AGENCY:
            profiles.append(AgencyProfile.v1_only(code, regime))
        else:
            profiles.append(AgencyProfile(code, regime))
    return profiles


def _pair(branch: Branch, codes: Sequence[str], rng: random.Random) -> tuple[str, str]:
    guangdong = [c for c in codes if c.startswith("44")]
    if branch.guangdong:
        out, into = rng.sample(guangdong, 2)
        return out, into
    if branch.v1_side and V1_AGENCY in codes:
        other = rng.choice([c for c in codes if c != V1_AGENCY])
        return (V1_AGENCY, other) if rng.random() < 0.5 else (other, V1_AGENCY)
    candidates = [
        (a, b) for a in codes for b in codes if a != b and not (a in guangdong and b in guangdong)
    ]
    # A payout letter is a contact letter v2: a v1-only agency cannot receive one.
    candidates = [(a, b) for a, b in candidates if V1_AGENCY not in (a, b) or branch.payout is None]
    return rng.choice(candidates)


def _bank_account(person: PersonAccount) -> BankAccount:
    digits = "".join(ch for ch in person.id_number if ch.isdigit())
    return BankAccount(
        bank_name="中国建设银行",
        bank_code="105100000017",
        account_name=person.name,
        account_number=f"6217{digits[-12:]}",
    )


@dataclass
class Planned:
    """One planned transfer: its branch, both agencies, and the person as the outgoing books hold them."""

    branch: Branch
    outgoing: str
    receiving: str
    account: PersonAccount


GAPS: tuple[int, ...] = (0, 2, 3, 4, 8)
"""Months between the end at the old place and the application month, cycled over the transfers
when `plan_transfers` is given ``today``: every continuity class (kept, kept with back-payment up
to 3, broken from 4). Five is prime to the number of branches, so each branch meets several."""


def _ended_months_before(today: date, gap: int) -> date:
    """The ``as_of`` that makes a seeded person's participation end ``gap + 1`` months before
    ``today``'s month (`generate_person` ends it in the month before ``as_of``)."""
    index = today.year * 12 + today.month - 1 - gap
    return date(index // 12, index % 12 + 1, 1)


def plan_transfers(
    codes: Sequence[str], transfers: int, rng: random.Random, *, today: date | None = None
) -> tuple[list[Planned], dict[str, list[PersonAccount]]]:
    """``transfers`` transfers cycling through every branch, and the accounts to seed per agency.

    With ``today`` (the day the applications will be made), the i-th person's participation at the
    old place ends so that a gap of ``GAPS[i % len(GAPS)]`` months lies before the application
    month (the receiving agency's enrolment start when its books have none)."""
    planned: list[Planned] = []
    per_agency: dict[str, list[PersonAccount]] = {code: [] for code in codes}
    used: set[str] = set()
    for i in range(transfers):
        branch = BRANCHES[i % len(BRANCHES)]
        out, into = _pair(branch, codes, rng)
        options = dict(branch.outgoing_options)
        if today is not None and "as_of" not in options:
            options["as_of"] = _ended_months_before(today, GAPS[i % len(GAPS)])
        # An ID number is region, birthday and a sequence number: with many thousands of people
        # two can meet. One person in two transfers would be a duplicate application (a branch of
        # its own), not what this transfer's branch says: draw another birthday.
        while True:
            account_out, account_in = make_mover(rng, out, into, (i + 1) % 1000, **options)
            if account_out.id_number not in used:
                used.add(account_out.id_number)
                break
        if branch.receiving_type is not None:
            account_in = replace(account_in, insurance_type=branch.receiving_type)
        if not branch.receiving_enrolled:
            account_in = replace(account_in, enrolled=False, participation="stopped")
        if branch.seed_outgoing:
            per_agency[out].append(account_out)
        per_agency[into].append(account_in)
        planned.append(Planned(branch, out, into, account_out))
    return planned, per_agency


def applications_for(item: Planned) -> list[ApplicationSubmitted]:
    """The application(s) of one planned transfer, in order: a duplicate branch applies twice (the
    same person again while the first case is open, refused as a duplicate)."""
    account = item.account
    case_id = uuid.uuid4()
    payout = _bank_account(account) if item.branch.payout is not None else None
    application = ApplicationSubmitted(
        case_id=case_id,
        person=Person(name=account.name, gender=account.gender, id_number=account.id_number),
        insurance_type=account.insurance_type,
        from_region=item.outgoing,
        letter_number=f"LX{item.receiving}{case_id.hex[:10].upper()}",
        payout_account=payout,
        payout_reason=item.branch.payout if payout is not None else None,
    )
    if not item.branch.duplicate:
        return [application]
    second = replace(application, case_id=uuid.uuid4(), letter_number=application.letter_number + "B")
    return [application, second]


def expected_outcome(branch: Branch, duplicate: bool) -> str:
    """What the case should end in: a duplicate branch's first application completes, its second
    is refused."""
    return branch.expected if duplicate or not branch.duplicate else "completed"
