"""A sample participation certificate, its issuer's key and an agency directory listing that key."""

from __future__ import annotations

from datetime import date
from typing import Any

from agents.domain.certificate import Holder, IssuingAgency, ParticipationCertificate
from broker.directory import AgencyDirectory, AgencyEntry, DirectoryBankAccount
from broker.signing import Ed25519PrivateKey, generate_private_key, public_key_to_raw_b64
from schemas.common import Gender, InsuranceType, make_citizen_id
from schemas.information import ContributionPeriod

ISSUER = IssuingAgency(code="440300", name="深圳市社会保险基金管理局")
ID_NUMBER = make_citizen_id("440305", date(1990, 5, 17), 123)
HOLDER = Holder(name="买买提·艾力", gender=Gender.MALE, id_number=ID_NUMBER)
PERIODS = (
    ContributionPeriod(
        from_month="2015-07", to_month="2020-12", region="360400",
        insurance_type=InsuranceType.EMPLOYEE, months=66,
    ),
    ContributionPeriod(
        from_month="2021-03", to_month="2026-10", region="440300",
        insurance_type=InsuranceType.EMPLOYEE, months=64,
    ),
)


def sample_certificate(**changes: Any) -> ParticipationCertificate:
    fields: dict[str, Any] = {
        "certificate_number": "440300-2026-000123",
        "holder": HOLDER,
        "insurance_type": InsuranceType.EMPLOYEE,
        "participation_start": "2015-07",
        "participation_end": "2026-10",
        "months_paid": 130,
        "deemed_months": 12,
        "periods": PERIODS,
        "balance_fen": 1_234_567,
        "issuer": ISSUER,
        "issued_on": date(2026, 11, 30),
    }
    fields.update(changes)
    return ParticipationCertificate.issue(**fields)


def issuer_key() -> tuple[Ed25519PrivateKey, AgencyDirectory]:
    """A fresh key for `ISSUER` and an agency directory that lists its public half."""
    private = generate_private_key()
    entry = AgencyEntry(
        code=ISSUER.code,
        name=ISSUER.name,
        supported_versions={"information_form": (1, 2)},
        public_key=public_key_to_raw_b64(private),
        bank_account=DirectoryBankAccount(
            bank_name="中国工商银行深圳分行",
            bank_code="102584000002",
            account_name=ISSUER.name,
            account_number="4000020209200000001",
        ),
    )
    return private, AgencyDirectory([entry])
