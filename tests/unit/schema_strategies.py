"""Hypothesis strategies that build valid documents of every (type, version)."""

from __future__ import annotations

from datetime import date
from typing import Any

from hypothesis import strategies as st

from schemas.common import (
    MAX_FEN,
    AgencyDetails,
    BankAccount,
    Document,
    InsuranceType,
    Person,
    gender_of_citizen_id,
    make_citizen_id,
    month_index,
)
from schemas.contact import ContactLetterV1, ContactLetterV2, PayoutReason, upcast_contact_v1_to_v2
from schemas.funds import FundTransferV1, RemittanceMark
from schemas.information import (
    BalanceDisposition,
    ContributionPeriod,
    InformationFormV1,
    InformationFormV2,
)
from schemas.notices import (
    ContinuityNotice,
    ContinuityOutcome,
    OverdueStep,
    ReceiptV1,
    RejectionReason,
    RejectionV1,
    RejectionV2,
    ReminderV1,
    TransferCompletedV1,
    TransferCompletedV2,
)
from schemas.reconciliation import (
    Difference,
    LedgerStatementV1,
    ReconciliationOutcome,
    ReconciliationResultV1,
    Role,
    StatementRequestV1,
)

# Common characters, rarer ones from CJK Extension A and B, and 〇: names use all of them.
_HAN = (
    "张王李赵刘陈杨黄吴周徐孙马朱胡郭何林高罗伟芳娜敏静丽"
    "强磊军洋勇艳杰涛明超秀霞平刚桂英买提艾力阿古丽热娜尔䶮𠈌𪚥〇"
)

agency_codes = st.from_regex(r"[1-6][0-9]{5}", fullmatch=True)
months_counts = st.integers(min_value=0, max_value=600)
fen = st.integers(min_value=0, max_value=MAX_FEN)
positive_fen = st.integers(min_value=1, max_value=MAX_FEN)
insurance_types = st.sampled_from(InsuranceType)


@st.composite
def citizen_ids(draw: st.DrawFn) -> str:
    region = draw(agency_codes)
    birth = draw(st.dates(min_value=date(1900, 1, 1), max_value=date(2024, 12, 31)))
    return make_citizen_id(region, birth, draw(st.integers(0, 999)))


_name_part = st.text(alphabet=_HAN, min_size=1, max_size=6)
person_names = (
    st.lists(_name_part, min_size=1, max_size=4).map("·".join).filter(lambda name: len(name) <= 100)
)


@st.composite
def persons(draw: st.DrawFn) -> Person:
    id_number = draw(citizen_ids())
    return Person(name=draw(person_names), gender=gender_of_citizen_id(id_number), id_number=id_number)


def month_text(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


month_indexes = st.integers(min_value=month_index("1990-01"), max_value=month_index("2099-12"))
months = month_indexes.map(month_text)

_words = st.text(alphabet=_HAN + "abc123-", min_size=1, max_size=30)

bank_accounts = st.builds(
    BankAccount,
    bank_name=_words,
    bank_code=st.from_regex(r"[0-9]{12}", fullmatch=True),
    account_name=_words,
    account_number=st.from_regex(r"[0-9]{6,32}", fullmatch=True),
)

agency_details = st.builds(
    AgencyDetails,
    name=_words,
    address=_words,
    phone=st.from_regex(r"0[0-9]{2,3}-[0-9]{5,8}", fullmatch=True),
    bank_account=bank_accounts,
)


@st.composite
def contact_letters(draw: st.DrawFn) -> ContactLetterV1:
    from_region = draw(agency_codes)
    to_region = draw(agency_codes.filter(lambda code: code != from_region))
    return ContactLetterV1(
        letter_number=draw(st.from_regex(r"[A-Z]{2,4}-20[0-9]{2}-[0-9]{6}", fullmatch=True)),
        person=draw(persons()),
        insurance_type=draw(insurance_types),
        from_region=from_region,
        to_region=to_region,
        receiving_agency=draw(agency_details),
    )


@st.composite
def contact_letters_v2(draw: st.DrawFn) -> ContactLetterV2:
    letter = upcast_contact_v1_to_v2(draw(contact_letters()))
    if not draw(st.booleans()):
        return letter
    return letter.model_copy(
        update={"payout_account": draw(bank_accounts), "payout_reason": draw(st.sampled_from(PayoutReason))}
    )


@st.composite
def _balance_fields(draw: st.DrawFn, insurance_type: InsuranceType) -> dict[str, Any]:
    if insurance_type is InsuranceType.RESIDENT:
        disposition = BalanceDisposition.NO_ACCOUNT
    else:
        disposition = draw(st.sampled_from(BalanceDisposition))
    if disposition is BalanceDisposition.NO_ACCOUNT:
        return {"account_balance": 0, "amount_transferred": 0, "balance_disposition": disposition}
    balance = draw(positive_fen)
    amount = balance if disposition is BalanceDisposition.TRANSFERRED else 0
    return {
        "account_balance": balance,
        "amount_transferred": amount,
        "balance_disposition": disposition,
    }


@st.composite
def contribution_periods(draw: st.DrawFn, end: int) -> tuple[ContributionPeriod, ...]:
    """Periods in order, without overlap, none after month index ``end``."""
    boundaries = sorted(draw(st.sets(st.integers(month_index("1990-01"), end), min_size=0, max_size=8)))
    periods = []
    budget = 600  # keeps months_paid plus deemed months within MAX_MONTHS
    for first, last in zip(boundaries[::2], boundaries[1::2], strict=False):
        if budget == 0:
            break
        paid = draw(st.integers(1, min(last - first + 1, budget)))
        budget -= paid
        periods.append(
            ContributionPeriod(
                from_month=month_text(first),
                to_month=month_text(last),
                region=draw(agency_codes),
                insurance_type=draw(insurance_types),
                months=paid,
            )
        )
    return tuple(periods)


@st.composite
def information_forms_v2(draw: st.DrawFn, itemised: bool | None = None) -> InformationFormV2:
    start = draw(month_indexes)
    end = draw(st.integers(start, month_index("2099-12")))
    insurance_type = draw(insurance_types)
    if itemised is None:
        itemised = draw(st.booleans())
    periods = draw(contribution_periods(end)) if itemised else None
    months_paid = sum(period.months for period in periods) if periods is not None else draw(months_counts)
    return InformationFormV2(
        person=draw(persons()),
        insurance_type=insurance_type,
        participation_start=month_text(start),
        participation_end=month_text(end),
        months_paid=months_paid,
        deemed_months=draw(st.integers(0, 1200 - months_paid)),
        contribution_periods=periods,
        seal_reference=draw(st.none() | _words) if not itemised else draw(_words),
        **draw(_balance_fields(insurance_type)),
    )


@st.composite
def information_forms_v1(draw: st.DrawFn) -> InformationFormV1:
    form = draw(information_forms_v2(itemised=False))
    return InformationFormV1(**form.model_dump(exclude={"contribution_periods", "seal_reference"}))


@st.composite
def fund_transfers(draw: st.DrawFn) -> FundTransferV1:
    person = draw(persons())
    payer = draw(bank_accounts)
    payee = draw(bank_accounts.filter(lambda account: account.account_number != payer.account_number))
    return FundTransferV1(
        amount=draw(positive_fen),
        payer_account=payer,
        payee_account=payee,
        information_form_id=draw(st.uuids()),
        remittance_mark=RemittanceMark(name=person.name, id_number=person.id_number),
    )


@st.composite
def reminders(draw: st.DrawFn) -> ReminderV1:
    since = draw(st.dates(min_value=date(2016, 1, 1), max_value=date(2030, 12, 31)))
    due = draw(st.dates(min_value=since, max_value=date(2031, 12, 31)))
    return ReminderV1(overdue_step=draw(st.sampled_from(OverdueStep)), waiting_since=since, due_on=due)


@st.composite
def ledger_statements(draw: st.DrawFn) -> LedgerStatementV1:
    role = draw(st.sampled_from(Role))
    has_record = draw(st.booleans())
    number = fen if has_record else st.just(0)
    count = months_counts if has_record else st.just(0)
    outgoing_only = number if role is Role.OUTGOING else st.just(0)
    return LedgerStatementV1(
        case_id=draw(st.uuids()),
        role=role,
        counterpart=draw(agency_codes),
        has_record=has_record,
        months=draw(count),
        deemed_months=draw(count),
        amount=draw(number),
        paid_out=draw(outgoing_only),
        retained=draw(outgoing_only),
    )


_values = st.none() | st.booleans() | st.integers(0, MAX_FEN)


@st.composite
def differences(draw: st.DrawFn) -> Difference:
    outgoing = draw(_values)
    receiving = draw(_values.filter(lambda v: type(v) is not type(outgoing) or v != outgoing))
    return Difference(
        field=draw(st.from_regex(r"[a-z][a-z_]{0,20}", fullmatch=True)),
        outgoing_value=outgoing,
        receiving_value=receiving,
    )


@st.composite
def reconciliation_results(draw: st.DrawFn) -> ReconciliationResultV1:
    outgoing = draw(agency_codes)
    receiving = draw(agency_codes.filter(lambda code: code != outgoing))
    found = draw(st.lists(differences(), max_size=5, unique_by=lambda d: d.field))
    return ReconciliationResultV1(
        case_id=draw(st.uuids()),
        outgoing=outgoing,
        receiving=receiving,
        outcome=ReconciliationOutcome.MISMATCHED if found else ReconciliationOutcome.MATCHED,
        differences=tuple(found),
    )


@st.composite
def completions_v2(draw: st.DrawFn) -> TransferCompletedV2:
    """A v2 notice whose continuity is what the domain decides for a random end and start."""
    from agents.domain.continuity import add_months, assess_continuity  # the rules, not a copy

    notice: ContinuityNotice | None = None
    if draw(st.booleans()):
        end = f"{draw(st.integers(2000, 2030)):04d}-{draw(st.integers(1, 12)):02d}"
        start = add_months(end, draw(st.integers(-24, 60)))
        decided = assess_continuity(end, start, waiting_months=draw(st.integers(0, 6)))
        notice = ContinuityNotice(
            participation_end=decided.participation_end,
            enrolment_start=decided.enrolment_start,
            gap_months=decided.gap_months,
            outcome=ContinuityOutcome(decided.outcome.value),
            back_payment_months=decided.back_payment_months,
            waiting_months=decided.waiting_months,
            benefits_from=decided.benefits_from,
        )
    return TransferCompletedV2(
        months_credited=draw(months_counts),
        deemed_months_credited=draw(months_counts),
        amount_credited=draw(fen),
        continuity=notice,
    )


_texts = st.text(alphabet=_HAN + "，。 abc", min_size=1, max_size=200).map(str.strip).filter(bool)

DOCUMENTS: dict[tuple[str, int], st.SearchStrategy[Document]] = {
    ("contact_letter", 1): contact_letters(),
    ("contact_letter", 2): contact_letters_v2(),
    ("information_form", 1): information_forms_v1(),
    ("information_form", 2): information_forms_v2(),
    ("fund_transfer", 1): fund_transfers(),
    ("receipt", 1): st.builds(ReceiptV1, acknowledged_message_id=st.uuids()),
    ("rejection", 1): st.builds(
        RejectionV1,
        reason_code=st.sampled_from([r for r in RejectionReason if r is not RejectionReason.WITHDRAWN]),
        text=_texts,
    ),
    ("rejection", 2): st.builds(RejectionV2, reason_code=st.sampled_from(RejectionReason), text=_texts),
    ("transfer_completed", 1): st.builds(
        TransferCompletedV1,
        months_credited=months_counts,
        deemed_months_credited=months_counts,
        amount_credited=fen,
    ),
    ("transfer_completed", 2): completions_v2(),
    ("reminder", 1): reminders(),
    ("statement_request", 1): st.builds(StatementRequestV1, case_id=st.uuids()),
    ("ledger_statement", 1): ledger_statements(),
    ("reconciliation_result", 1): reconciliation_results(),
}

documents: st.SearchStrategy[Document] = st.one_of(*DOCUMENTS.values())

__all__ = ["DOCUMENTS", "citizen_ids", "documents", "person_names", "persons"]
