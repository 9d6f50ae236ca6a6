"""One valid example of every (type, version), with fixed ids: for the published contract and tests.

The people are invented; their ID numbers carry valid check characters.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from uuid import UUID

from schemas.common import (
    AgencyDetails,
    BankAccount,
    Document,
    Gender,
    InsuranceType,
    Person,
    make_citizen_id,
)
from schemas.contact import ContactLetterV1, ContactLetterV2, PayoutReason
from schemas.envelope import Envelope
from schemas.funds import FundTransferV1, RemittanceMark
from schemas.information import (
    BalanceDisposition,
    ContributionPeriod,
    InformationFormV1,
    InformationFormV2,
    downcast_v2_to_v1,
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

__all__ = ["CASE_ID", "EXAMPLES", "example_envelope"]

CASE_ID = UUID("5b1e4c1e-0d3a-4f7e-9a51-2f4e8b7c6d01")
_FORM_ID = UUID("5b1e4c1e-0d3a-4f7e-9a51-2f4e8b7c6d03")
_SENT_AT = datetime(2025, 3, 14, 9, 30, tzinfo=timezone(timedelta(hours=8)))

OUTGOING = "360400"  # 九江
RECEIVING = "440300"  # 深圳

_PERSON = Person(
    name="买买提·艾力",
    gender=Gender.MALE,
    id_number=make_citizen_id("360402", date(1988, 7, 21), 135),
)
_RECEIVING_ACCOUNT = BankAccount(
    bank_name="中国工商银行深圳福田支行",
    bank_code="102584000123",
    account_name="深圳市社会保险基金管理局",
    account_number="4000023009200123456",
)
_OUTGOING_ACCOUNT = BankAccount(
    bank_name="中国建设银行九江分行",
    bank_code="105424000456",
    account_name="九江市医疗保障事业管理中心",
    account_number="36050160250100000789",
)

_FORM_V2 = InformationFormV2(
    person=_PERSON,
    insurance_type=InsuranceType.EMPLOYEE,
    participation_start="2012-07",
    participation_end="2024-12",
    months_paid=140,
    deemed_months=24,
    account_balance=1_234_567,
    amount_transferred=1_234_567,
    balance_disposition=BalanceDisposition.TRANSFERRED,
    contribution_periods=(
        ContributionPeriod(
            from_month="2012-07",
            to_month="2018-06",
            region=OUTGOING,
            insurance_type=InsuranceType.EMPLOYEE,
            months=72,
        ),
        ContributionPeriod(
            from_month="2019-01",
            to_month="2024-12",
            region=OUTGOING,
            insurance_type=InsuranceType.EMPLOYEE,
            months=68,
        ),
    ),
    seal_reference="JX-SEAL-2025-000321",
)
_FORM_V1: InformationFormV1 = downcast_v2_to_v1(_FORM_V2)

EXAMPLES: dict[tuple[str, int], Document] = {
    ("contact_letter", 1): ContactLetterV1(
        letter_number="SZYB-2025-001024",
        person=_PERSON,
        insurance_type=InsuranceType.EMPLOYEE,
        from_region=OUTGOING,
        to_region=RECEIVING,
        receiving_agency=AgencyDetails(
            name="深圳市社会保险基金管理局",
            address="深圳市福田区深南大道8005号",
            phone="0755-12393",
            bank_account=_RECEIVING_ACCOUNT,
        ),
    ),
    ("contact_letter", 2): ContactLetterV2(
        letter_number="SZYB-2025-001025",
        person=_PERSON,
        insurance_type=InsuranceType.EMPLOYEE,
        from_region=OUTGOING,
        to_region=RECEIVING,
        receiving_agency=AgencyDetails(
            name="深圳市社会保险基金管理局",
            address="深圳市福田区深南大道8005号",
            phone="0755-12393",
            bank_account=_RECEIVING_ACCOUNT,
        ),
        payout_account=BankAccount(
            bank_name="中国农业银行深圳南山支行",
            bank_code="103584000789",
            account_name="买买提·艾力",
            account_number="6228480123456789012",
        ),
        payout_reason=PayoutReason.RETIREE_RESETTLED,
    ),
    ("information_form", 1): _FORM_V1,
    ("information_form", 2): _FORM_V2,
    ("fund_transfer", 1): FundTransferV1(
        amount=1_234_567,
        payer_account=_OUTGOING_ACCOUNT,
        payee_account=_RECEIVING_ACCOUNT,
        information_form_id=_FORM_ID,
        remittance_mark=RemittanceMark(name=_PERSON.name, id_number=_PERSON.id_number),
    ),
    ("receipt", 1): ReceiptV1(acknowledged_message_id=_FORM_ID),
    ("rejection", 1): RejectionV1(
        reason_code=RejectionReason.ARREARS,
        text="参保人在转出地存在欠费，补缴后再申请。",
    ),
    ("rejection", 2): RejectionV2(
        reason_code=RejectionReason.WITHDRAWN,
        text="转入地已撤回申请：参保人放弃本次转移。",
    ),
    ("transfer_completed", 1): TransferCompletedV1(
        months_credited=140, deemed_months_credited=24, amount_credited=1_234_567
    ),
    ("reminder", 1): ReminderV1(
        overdue_step=OverdueStep.INFORMATION_FORM,
        waiting_since=date(2025, 2, 24),
        due_on=date(2025, 3, 10),
    ),
    ("statement_request", 1): StatementRequestV1(case_id=CASE_ID),
    ("ledger_statement", 1): LedgerStatementV1(
        case_id=CASE_ID,
        role=Role.OUTGOING,
        counterpart=RECEIVING,
        has_record=True,
        months=140,
        deemed_months=24,
        amount=1_234_567,
        paid_out=0,
        retained=0,
    ),
    ("reconciliation_result", 1): ReconciliationResultV1(
        case_id=CASE_ID,
        outgoing=OUTGOING,
        receiving=RECEIVING,
        outcome=ReconciliationOutcome.MISMATCHED,
        differences=(Difference(field="amount", outgoing_value=1_234_567, receiving_value=1_234_500),),
    ),
    # Appended, not next to v1: an example's message_id follows its place in this dict.
    ("transfer_completed", 2): TransferCompletedV2(
        months_credited=140,
        deemed_months_credited=24,
        amount_credited=1_234_567,
        continuity=ContinuityNotice(
            participation_end="2024-12",
            enrolment_start="2025-03",
            gap_months=2,
            outcome=ContinuityOutcome.KEPT_WITH_BACK_PAYMENT,
            back_payment_months=("2025-01", "2025-02"),
            waiting_months=0,
            benefits_from="2025-03",
        ),
    ),
}

# Who sends each type in the examples: (sender, recipient).
_ROUTES: dict[str, tuple[str, str]] = {
    "contact_letter": (RECEIVING, OUTGOING),
    "information_form": (OUTGOING, RECEIVING),
    "fund_transfer": (OUTGOING, RECEIVING),
    "receipt": (RECEIVING, OUTGOING),
    "rejection": (OUTGOING, RECEIVING),
    "transfer_completed": (RECEIVING, OUTGOING),
    "reminder": (RECEIVING, OUTGOING),
    "statement_request": ("000000", OUTGOING),
    "ledger_statement": (OUTGOING, "000000"),
    "reconciliation_result": ("000000", OUTGOING),
}


def example_envelope(document: Document) -> Envelope:
    """An unsigned envelope for an example document, with fixed ids and time."""
    sender, recipient = _ROUTES[document.MESSAGE_TYPE]
    number = list(EXAMPLES).index((document.MESSAGE_TYPE, document.VERSION)) + 16
    return Envelope(
        message_id=UUID(f"5b1e4c1e-0d3a-4f7e-9a51-2f4e8b7c6d{number:02x}"),
        case_id=CASE_ID,
        causation_id=None,
        type=document.MESSAGE_TYPE,
        version=document.VERSION,
        sender=sender,
        recipient=recipient,
        sent_at=_SENT_AT,
        payload=document.model_dump(mode="json"),
    )
