"""The message contracts between agencies: envelope, documents, registry.

Most callers need only `parse` (receive), `envelope_for` and `encode_envelope` (send),
`negotiate_version` (pick the recipient's version) and the document models.
"""

from schemas.common import (
    AgencyCode,
    AgencyDetails,
    BankAccount,
    CitizenId,
    Document,
    Fen,
    Gender,
    InsuranceType,
    Month,
    Months,
    Person,
    PersonName,
    citizen_id_check_char,
    make_citizen_id,
    month_span,
)
from schemas.contact import ContactLetterV1, ContactLetterV2, PayoutReason
from schemas.envelope import Envelope, signing_input
from schemas.errors import ContractError
from schemas.funds import FundTransferV1, RemittanceMark
from schemas.information import (
    BalanceDisposition,
    ContributionPeriod,
    InformationFormV1,
    InformationFormV2,
)
from schemas.notices import (
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
from schemas.registry import (
    Message,
    MessageType,
    decode_envelope,
    downcast,
    encode_envelope,
    envelope_for,
    known_versions,
    message_types,
    model_for,
    negotiate_version,
    newest_version,
    parse,
    upcast,
    validate_document,
)

ContactLetter = ContactLetterV2
InformationForm = InformationFormV2
FundTransfer = FundTransferV1
Receipt = ReceiptV1
Rejection = RejectionV2
TransferCompleted = TransferCompletedV2
Reminder = ReminderV1
StatementRequest = StatementRequestV1
LedgerStatement = LedgerStatementV1
ReconciliationResult = ReconciliationResultV1
"""Unversioned names: always the newest version, the one `parse` hands out."""

__all__ = [
    "AgencyCode",
    "AgencyDetails",
    "BalanceDisposition",
    "BankAccount",
    "CitizenId",
    "ContactLetter",
    "ContactLetterV1",
    "ContactLetterV2",
    "ContractError",
    "ContributionPeriod",
    "Difference",
    "Document",
    "Envelope",
    "Fen",
    "FundTransfer",
    "FundTransferV1",
    "Gender",
    "InformationForm",
    "InformationFormV1",
    "InformationFormV2",
    "InsuranceType",
    "LedgerStatement",
    "LedgerStatementV1",
    "Message",
    "MessageType",
    "Month",
    "Months",
    "OverdueStep",
    "PayoutReason",
    "Person",
    "PersonName",
    "Receipt",
    "ReceiptV1",
    "ReconciliationOutcome",
    "ReconciliationResult",
    "ReconciliationResultV1",
    "Rejection",
    "RejectionReason",
    "RejectionV1",
    "RejectionV2",
    "Reminder",
    "ReminderV1",
    "RemittanceMark",
    "Role",
    "StatementRequest",
    "StatementRequestV1",
    "TransferCompleted",
    "TransferCompletedV1",
    "TransferCompletedV2",
    "citizen_id_check_char",
    "decode_envelope",
    "downcast",
    "encode_envelope",
    "envelope_for",
    "known_versions",
    "make_citizen_id",
    "message_types",
    "model_for",
    "month_span",
    "negotiate_version",
    "newest_version",
    "parse",
    "signing_input",
    "upcast",
    "validate_document",
]
