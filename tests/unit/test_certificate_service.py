"""Certificates signed by the issuing agency and verified at the receiving agency's counter."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.domain.certificate import ParticipationCertificate, check_code_of
from agents.domain.numerals import MAX_CAPITAL_FEN, capital_amount
from agents.service.certificates import (
    CertificateRefused,
    canonical_certificate_bytes,
    certificate_from_json,
    certificate_to_json,
    sign_certificate,
    verify_certificate,
)
from broker.directory import AgencyDirectory
from broker.signing import Ed25519PrivateKey, generate_private_key
from schemas.errors import DomainRuleViolation
from tests.unit.certificate_samples import ID_NUMBER, issuer_key, sample_certificate


@pytest.fixture
def issued() -> tuple[ParticipationCertificate, AgencyDirectory]:
    private, directory = issuer_key()
    return sign_certificate(sample_certificate(), private), directory


def _refusal(document: Any, directory: AgencyDirectory, **kwargs: Any) -> CertificateRefused:
    with pytest.raises(CertificateRefused) as caught:
        verify_certificate(document, directory, **kwargs)
    assert isinstance(caught.value, DomainRuleViolation)
    assert ID_NUMBER not in str(caught.value)
    return caught.value


def _tampered(certificate: ParticipationCertificate, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(certificate_to_json(certificate))
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        target = data
        for parent in parents:
            target = target[parent]
        target[leaf] = value
    return data


def test_a_signed_certificate_verifies_under_the_directorys_key_with_its_printed_code(
    issued: tuple[ParticipationCertificate, AgencyDirectory],
) -> None:
    certificate, directory = issued
    assert certificate.check_code == check_code_of(certificate.signature or "")
    verified = verify_certificate(
        certificate, directory, printed_check_code=certificate.check_code, on=date(2027, 1, 5)
    )
    assert verified == certificate


def test_the_json_form_round_trips_and_still_verifies(
    issued: tuple[ParticipationCertificate, AgencyDirectory],
) -> None:
    certificate, directory = issued
    text = certificate_to_json(certificate)
    assert ID_NUMBER in text and "买买提·艾力" in text  # the person's own document: in full
    assert json.loads(text)["balance_in_words"] == "壹万贰仟叁佰肆拾伍元陆角柒分"
    back = certificate_from_json(text)
    assert back == certificate
    assert certificate_to_json(back) == text
    assert verify_certificate(text.encode("utf-8"), directory) == certificate
    assert verify_certificate(json.loads(text), directory) == certificate


def test_the_signed_bytes_are_canonical_json_without_signature_or_code(
    issued: tuple[ParticipationCertificate, AgencyDirectory],
) -> None:
    certificate, _ = issued
    signed = canonical_certificate_bytes(certificate)
    content = json.loads(signed)
    assert "signature" not in content and "check_code" not in content
    assert content["format"] == "jiexu.participation_certificate/1"
    assert signed == canonical_certificate_bytes(certificate_from_json(certificate_to_json(certificate)))


def test_a_typed_check_code_in_lower_case_with_spaces_is_accepted(
    issued: tuple[ParticipationCertificate, AgencyDirectory],
) -> None:
    certificate, directory = issued
    typed = (certificate.check_code or "").replace("-", " ").lower()
    assert verify_certificate(certificate, directory, printed_check_code=typed) == certificate


def test_a_changed_balance_is_refused_because_its_words_no_longer_agree(
    issued: tuple[ParticipationCertificate, AgencyDirectory],
) -> None:
    certificate, directory = issued
    refusal = _refusal(_tampered(certificate, balance_fen=9_234_567), directory)
    assert refusal.reason_code == "invalid_certificate"
    assert "balance_in_words does not read as balance_fen" in refusal.text


def test_a_changed_balance_with_matching_words_is_refused_by_the_signature(
    issued: tuple[ParticipationCertificate, AgencyDirectory],
) -> None:
    certificate, directory = issued
    forged = _tampered(certificate, balance_fen=9_234_567, balance_in_words=capital_amount(9_234_567))
    refusal = _refusal(forged, directory)
    assert refusal.reason_code == "bad_signature"
    assert "altered after it was issued" in refusal.text


@pytest.mark.parametrize(
    "change",
    [
        {"holder__name": "张伟"},
        {"months_paid": 140, "periods": []},
        {"participation_start": "2014-07"},
        {"certificate_number": "440300-2026-000124"},
        {"issuer__name": "深圳市医疗保障局"},
    ],
)
def test_any_other_changed_field_is_refused_by_the_signature(
    issued: tuple[ParticipationCertificate, AgencyDirectory], change: dict[str, Any]
) -> None:
    certificate, directory = issued
    assert _refusal(_tampered(certificate, **change), directory).reason_code == "bad_signature"


def test_a_changed_check_code_in_the_json_is_refused(
    issued: tuple[ParticipationCertificate, AgencyDirectory],
) -> None:
    certificate, directory = issued
    refusal = _refusal(_tampered(certificate, check_code="ABCD-EFGH-JKMN"), directory)
    assert refusal.reason_code == "invalid_certificate"
    assert "check_code" in refusal.text


def test_a_printed_check_code_that_is_not_the_signatures_is_refused(
    issued: tuple[ParticipationCertificate, AgencyDirectory],
) -> None:
    certificate, directory = issued
    refusal = _refusal(certificate, directory, printed_check_code="ABCD-EFGH-JKMN")
    assert refusal.reason_code == "check_code_mismatch"


def test_a_certificate_signed_with_another_key_is_refused(
    issued: tuple[ParticipationCertificate, AgencyDirectory],
) -> None:
    certificate, directory = issued
    impostor: Ed25519PrivateKey = generate_private_key()
    forged = sign_certificate(certificate, impostor)
    refusal = _refusal(forged, directory, printed_check_code=forged.check_code)
    assert refusal.reason_code == "bad_signature"


def test_an_unsigned_certificate_is_refused(issued: tuple[ParticipationCertificate, AgencyDirectory]) -> None:
    _, directory = issued
    assert _refusal(sample_certificate(), directory).reason_code == "unsigned"


def test_a_certificate_from_an_agency_not_in_the_directory_is_refused(
    issued: tuple[ParticipationCertificate, AgencyDirectory],
) -> None:
    certificate, _ = issued
    refusal = _refusal(certificate, AgencyDirectory([]))
    assert refusal.reason_code == "unknown_issuer"
    assert "440300" in refusal.text


def test_an_expired_certificate_is_refused(issued: tuple[ParticipationCertificate, AgencyDirectory]) -> None:
    certificate, directory = issued
    assert verify_certificate(certificate, directory, on=date(2027, 2, 28)) == certificate
    refusal = _refusal(certificate, directory, on=date(2027, 3, 1))
    assert refusal.reason_code == "expired"


@pytest.mark.parametrize("text", ["not json", "{}", "[]", '{"format": "something/else"}'])
def test_what_is_not_a_certificate_is_refused(
    issued: tuple[ParticipationCertificate, AgencyDirectory], text: str
) -> None:
    _, directory = issued
    assert _refusal(text, directory).reason_code == "invalid_certificate"


def test_a_malformed_id_number_is_refused_without_echoing_it(
    issued: tuple[ParticipationCertificate, AgencyDirectory],
) -> None:
    certificate, directory = issued
    wrong = ID_NUMBER[:17] + ("0" if ID_NUMBER[17] != "0" else "1")
    refusal = _refusal(_tampered(certificate, holder__id_number=wrong), directory)
    assert refusal.reason_code == "invalid_certificate"
    assert wrong not in refusal.text and "holder.id_number" in refusal.text


_PRIVATE, _DIRECTORY = issuer_key()


@given(
    st.integers(min_value=1, max_value=MAX_CAPITAL_FEN - 1),
    st.dates(min_value=date(2026, 11, 1), max_value=date(2090, 12, 31)),
)
@settings(max_examples=50, deadline=None)
def test_any_balance_and_issue_day_round_trip_and_one_fen_more_is_refused(balance: int, day: date) -> None:
    certificate = sign_certificate(sample_certificate(balance_fen=balance, issued_on=day), _PRIVATE)
    text = certificate_to_json(certificate)
    assert verify_certificate(text, _DIRECTORY, printed_check_code=certificate.check_code) == certificate
    forged = _tampered(certificate, balance_fen=balance + 1, balance_in_words=capital_amount(balance + 1))
    assert _refusal(forged, _DIRECTORY).reason_code == "bad_signature"
