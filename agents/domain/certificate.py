"""The participation certificate (参保凭证): the outgoing agency's proof of a person's participation.

Issued to the person when the outgoing agency ends the relationship (domain.md): the periods, the
personal-account balance in figures and in capital numerals (大写, `agents.domain.numerals`), the
issuing agency, a certificate number, the issue date, the last date to register at the new place,
and a check code. The person carries it (on paper or as its JSON) to the receiving agency.

Validity: **3 months** from the issue date, counted as the Civil Code counts months (民法典
第二百零一条、第二百零二条): the period starts the day after issue and ends on the day of the same
number 3 months later; where that month has no such day, on its last day. Issued 2026-01-15: register
by 2026-04-15; issued 2025-11-30: by 2026-02-28; issued 2023-11-30: by 2024-02-29. The last day is
included. (Art. 203's move of a last day that falls on a holiday is not applied: applications are
taken online every day.)

Check code: the issuing agency signs the certificate's **signed content** (its JSON form without
``signature`` and ``check_code``, canonicalised by RFC 8785 in `agents.service.certificates`) with
its Ed25519 key. The check code is the first 60 bits of SHA-256 over a fixed label and the 64-byte
signature, in Crockford base32, printed ``XXXX-XXXX-XXXX``. A clerk compares the printed code with
the one derived from the JSON's signature; the signature itself is checked under the directory's key
for the issuing agency. Neither alone is enough: a code cannot be checked without its signature, and
a signature says nothing about the paper in hand without the code.

Personal data: the certificate carries the full 公民身份号码 and name (it is the person's own
document), but its ``repr`` and ``str`` mask both, and its validation errors never echo a value.

Pure: the standard library, pydantic and `schemas` only; no logging, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import hashlib
from collections.abc import Iterator
from datetime import date
from itertools import pairwise
from typing import Any, Final, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agents.domain.numerals import MAX_CAPITAL_FEN, capital_amount
from schemas.common import (
    AgencyCode,
    AgencyName,
    CitizenId,
    Gender,
    InsuranceType,
    Month,
    Months,
    Person,
    PersonName,
    ShortText,
    gender_of_citizen_id,
)
from schemas.information import ContributionPeriod

__all__ = [
    "CERTIFICATE_FORMAT",
    "CHECK_CODE_LENGTH",
    "VALIDITY_MONTHS",
    "Holder",
    "IssuingAgency",
    "ParticipationCertificate",
    "add_calendar_months",
    "check_code_of",
    "normalise_check_code",
]

CERTIFICATE_FORMAT: Final = "jiexu.participation_certificate/1"
"""Names the JSON form and its version; part of the signed content."""

VALIDITY_MONTHS = 3
"""A certificate is valid for 3 months from its issue date (domain.md)."""

CHECK_CODE_LENGTH = 12
"""Characters of the check code, hyphens apart: 60 bits."""

_CHECK_LABEL = b"jiexu participation certificate check code v1\x00"
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CROCKFORD_READS = str.maketrans({"O": "0", "I": "1", "L": "1"})


def add_calendar_months(day: date, months: int) -> date:
    """The day of the same number ``months`` later, or that month's last day when it has none."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def check_code_of(signature: str) -> str:
    """The printed check code for a base64 Ed25519 signature: ``XXXX-XXXX-XXXX``.

    Raises ``ValueError`` when ``signature`` is not base64 of 64 bytes.
    """
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("signature is not valid base64") from None
    if len(raw) != 64:
        raise ValueError(f"an Ed25519 signature is 64 bytes, this one is {len(raw)}")
    bits = int.from_bytes(hashlib.sha256(_CHECK_LABEL + raw).digest()[:8]) >> 4
    chars = "".join(_CROCKFORD[bits >> (5 * n) & 31] for n in range(CHECK_CODE_LENGTH - 1, -1, -1))
    return "-".join(chars[n : n + 4] for n in range(0, CHECK_CODE_LENGTH, 4))


def normalise_check_code(text: str) -> str:
    """A check code as a person or clerk may type it, in the printed form (or "" when it cannot be).

    Case, spaces and hyphens do not matter; O reads as 0, I and L as 1 (Crockford base32).
    """
    chars = "".join(text.split()).replace("-", "").upper().translate(_CROCKFORD_READS)
    if len(chars) != CHECK_CODE_LENGTH or not set(chars) <= set(_CROCKFORD):
        return ""
    return "-".join(chars[n : n + 4] for n in range(0, CHECK_CODE_LENGTH, 4))


def _mask_id(id_number: str) -> str:
    return f"{id_number[:6]}********{id_number[-1]}"


def _mask_name(name: str) -> str:
    return name[:1] + "*" * max(len(name) - 1, 1)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Holder(_Frozen):
    """The person the certificate is for. Printed in full; masked in ``repr`` and ``str``."""

    name: PersonName
    gender: Gender
    id_number: CitizenId

    @classmethod
    def of(cls, person: Person) -> Holder:
        return cls(name=person.name, gender=person.gender, id_number=person.id_number)

    @model_validator(mode="after")
    def _gender_agrees_with_id(self) -> Self:
        if gender_of_citizen_id(self.id_number) is not self.gender:
            raise ValueError("gender does not agree with id_number (its 17th digit: odd male, even female)")
        return self

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        yield "name", _mask_name(self.name)
        yield "gender", self.gender
        yield "id_number", _mask_id(self.id_number)


class IssuingAgency(_Frozen):
    code: AgencyCode
    name: AgencyName


class ParticipationCertificate(_Frozen):
    """《基本医疗保险参保凭证》 as JSON: build one with `issue`, sign it in the service layer.

    Checked on every construction (so a tampered JSON form is refused, naming the field, before any
    signature is looked at): participation start <= end <= the month of issue; periods (when given)
    oldest first, not overlapping, each within its span, none after the end, adding up to
    ``months_paid`` (the information form's rules);
    resident insurance (390) has balance 0; ``balance_in_words`` is `capital_amount` of
    ``balance_fen``; ``register_by`` is 3 months after ``issued_on``; ``check_code`` and
    ``signature`` come together and the code is `check_code_of` the signature.
    """

    format: Literal["jiexu.participation_certificate/1"] = CERTIFICATE_FORMAT
    certificate_number: ShortText = Field(description="The issuing agency's number for it.")
    holder: Holder
    insurance_type: InsuranceType
    participation_start: Month
    participation_end: Month
    months_paid: Months = Field(description="实际缴费月数.")
    deemed_months: Months = Field(description="视同缴费月数.")
    periods: tuple[ContributionPeriod, ...] = Field(
        description="The months paid, oldest first; empty when the books do not itemise them."
    )
    balance_fen: int = Field(ge=0, le=MAX_CAPITAL_FEN, strict=True, description="个人账户余额, fen.")
    balance_in_words: str = Field(description="The balance in capital numerals (大写).")
    issuer: IssuingAgency
    issued_on: date
    register_by: date = Field(description="Last day to register at the new place (included).")
    check_code: str | None = None
    signature: str | None = Field(default=None, description="base64 Ed25519 by the issuer.")

    @classmethod
    def issue(
        cls,
        *,
        certificate_number: str,
        holder: Holder,
        insurance_type: InsuranceType,
        participation_start: str,
        participation_end: str,
        months_paid: int,
        deemed_months: int,
        periods: tuple[ContributionPeriod, ...],
        balance_fen: int,
        issuer: IssuingAgency,
        issued_on: date,
    ) -> ParticipationCertificate:
        """An unsigned certificate, its words and last date to register derived from the figures."""
        return cls(
            certificate_number=certificate_number,
            holder=holder,
            insurance_type=insurance_type,
            participation_start=participation_start,
            participation_end=participation_end,
            months_paid=months_paid,
            deemed_months=deemed_months,
            periods=periods,
            balance_fen=balance_fen,
            balance_in_words=capital_amount(balance_fen) if 0 <= balance_fen <= MAX_CAPITAL_FEN else "",
            issuer=issuer,
            issued_on=issued_on,
            register_by=add_calendar_months(issued_on, VALIDITY_MONTHS),
        )

    def signed_content(self) -> dict[str, Any]:
        """The JSON object the issuer signs: the JSON form less ``signature`` and ``check_code``."""
        return self.model_dump(mode="json", exclude={"signature", "check_code"})

    def with_signature(self, signature: str) -> ParticipationCertificate:
        """A copy carrying ``signature`` (base64) and the check code derived from it."""
        return self.model_validate(
            {**self.model_dump(), "signature": signature, "check_code": check_code_of(signature)}
        )

    def is_valid_on(self, day: date) -> bool:
        """Whether the holder may still register with it on ``day`` (issue day to register_by)."""
        return self.issued_on <= day <= self.register_by

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.participation_start > self.participation_end:
            raise ValueError("participation_start must not be after participation_end")
        if self.participation_end > f"{self.issued_on:%Y-%m}":
            raise ValueError("participation_end must not be after the month of issue")
        self._check_periods()
        if self.insurance_type is InsuranceType.RESIDENT and self.balance_fen:
            raise ValueError("resident insurance (390) has no personal account: balance_fen must be 0")
        if self.balance_in_words != capital_amount(self.balance_fen):
            raise ValueError("balance_in_words does not read as balance_fen")
        if self.register_by != add_calendar_months(self.issued_on, VALIDITY_MONTHS):
            raise ValueError(f"register_by must be {VALIDITY_MONTHS} months after issued_on")
        if (self.signature is None) != (self.check_code is None):
            raise ValueError("check_code and signature come together")
        if self.signature is not None and self.check_code != check_code_of(self.signature):
            raise ValueError("check_code is not the one derived from the signature")
        return self

    def _check_periods(self) -> None:
        # The information form's rules (schemas.information): the same books write both.
        periods = self.periods
        for number, (earlier, later) in enumerate(pairwise(periods), 2):
            if later.from_month <= earlier.to_month:
                raise ValueError(f"periods must be oldest first, not overlapping (period {number})")
        if periods and periods[-1].to_month > self.participation_end:
            raise ValueError("periods must not end after participation_end")
        if periods and sum(p.months for p in periods) != self.months_paid:
            raise ValueError("periods must add up to months_paid")

    def __str__(self) -> str:
        return (
            f"参保凭证 {self.certificate_number} for {self.holder!r} issued by {self.issuer.code} "
            f"on {self.issued_on}"
        )
