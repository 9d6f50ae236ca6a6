"""The reconciliation agent's documents: statement request, ledger statement, result.

The reconciliation agent (code ``000000``) asks both agencies of a case for what their own books
say (``statement_request`` → ``ledger_statement``), compares the two statements, and publishes a
``reconciliation_result`` listing every field that differs with both values.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator
from pydantic_core import PydanticCustomError

from schemas.common import AgencyCode, Document, Fen, Months

__all__ = [
    "Difference",
    "LedgerStatementV1",
    "ReconciliationOutcome",
    "ReconciliationResultV1",
    "Role",
    "StatementRequestV1",
]


class StatementRequestV1(Document):
    """Asks an agency for its ledger statement on one case."""

    MESSAGE_TYPE: ClassVar[str] = "statement_request"
    VERSION: ClassVar[int] = 1

    case_id: UUID


class Role(StrEnum):
    OUTGOING = "outgoing"
    RECEIVING = "receiving"


class LedgerStatementV1(Document):
    """What one agency's own books say about a case.

    For the outgoing agency: months and deemed months certified, amount debited (sent by fund
    transfer), paid out to the person, retained within the province. For the receiving agency:
    months and deemed months credited and amount credited; ``paid_out`` and ``retained`` are 0.
    ``has_record`` false means the agency has no record of the case: every number is then 0.
    """

    MESSAGE_TYPE: ClassVar[str] = "ledger_statement"
    VERSION: ClassVar[int] = 1

    case_id: UUID
    role: Role
    counterpart: AgencyCode = Field(description="The other agency of the case.")
    has_record: Annotated[bool, Strict()]
    months: Months = Field(description="Months paid certified (outgoing) or credited (receiving).")
    deemed_months: Months = Field(description="Deemed months certified or credited.")
    amount: Fen = Field(description="Fen debited by fund transfer (outgoing) or credited (receiving).")
    paid_out: Fen = Field(description="Fen paid to the person's own bank account (outgoing).")
    retained: Fen = Field(description="Fen retained within the province (outgoing).")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        numbers = (self.months, self.deemed_months, self.amount, self.paid_out, self.retained)
        if not self.has_record and any(numbers):
            raise PydanticCustomError(
                "no_record_nonzero", "a statement with has_record false must have every number 0"
            )
        if self.role is Role.RECEIVING and (self.paid_out or self.retained):
            raise PydanticCustomError(
                "receiving_pays_out",
                "paid_out and retained are the outgoing agency's: a receiving statement has 0",
            )
        return self


class ReconciliationOutcome(StrEnum):
    MATCHED = "matched"
    MISMATCHED = "mismatched"


Value = Annotated[int, Strict()] | Annotated[bool, Strict()] | None


class Difference(BaseModel):
    """One field on which the two statements disagree, with both values."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    field: str = Field(
        pattern=r"^[a-z][a-z_]*$",
        max_length=64,
        description="The ledger_statement field that differs, e.g. months or amount.",
    )
    outgoing_value: Value = Field(description="The outgoing agency's value (null: no statement).")
    receiving_value: Value = Field(description="The receiving agency's value (null: no statement).")

    @model_validator(mode="after")
    def _values_differ(self) -> Self:
        if type(self.outgoing_value) is type(self.receiving_value) and (
            self.outgoing_value == self.receiving_value
        ):
            raise PydanticCustomError("not_a_difference", "outgoing_value and receiving_value must differ")
        return self


class ReconciliationResultV1(Document):
    """Whether the two ends' books agree on a case; every difference when they do not."""

    model_config = ConfigDict(
        json_schema_extra={
            "allOf": [
                {
                    "if": {"properties": {"outcome": {"const": "matched"}}},
                    "then": {"properties": {"differences": {"maxItems": 0}}},
                    "else": {"properties": {"differences": {"minItems": 1}}},
                }
            ]
        }
    )

    MESSAGE_TYPE: ClassVar[str] = "reconciliation_result"
    VERSION: ClassVar[int] = 1

    case_id: UUID
    outgoing: AgencyCode
    receiving: AgencyCode
    outcome: ReconciliationOutcome
    differences: tuple[Difference, ...] = Field(
        description="Empty when matched; every differing field when mismatched."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.outgoing == self.receiving:
            raise PydanticCustomError("same_agency", "outgoing and receiving must differ")
        matched = self.outcome is ReconciliationOutcome.MATCHED
        if matched == bool(self.differences):
            raise PydanticCustomError(
                "outcome_mismatch",
                "outcome matched requires no differences; mismatched requires at least one",
            )
        fields = [difference.field for difference in self.differences]
        if len(set(fields)) != len(fields):
            raise PydanticCustomError("duplicate_difference", "differences must name each field at most once")
        return self
