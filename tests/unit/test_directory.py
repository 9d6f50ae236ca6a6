"""The agency directory: loads, answers lookups, picks the newest common version, rejects bad files."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from broker.directory import AgencyDirectory, AgencyEntry, DirectoryError, UnknownAgency
from broker.signing import generate_private_key, public_key_to_raw_b64, sign_envelope, verify_envelope
from schemas.envelope import Envelope

KEY_A = generate_private_key()
KEY_B = generate_private_key()


def _agency(code: str, key_b64: str, **changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "code": code,
        "name": f"医疗保障事务中心 {code}",
        "supported_versions": {"information_form": [2, 1], "fund_transfer": [1]},
        "public_key": key_b64,
        "bank_account": {
            "bank_name": "中国工商银行",
            "bank_code": "102100099996",
            "account_name": f"医保中心 {code}",
            "account_number": "0200001234567890123",
        },
        "phone": "010-12345678",
    }
    entry.update(changes)
    return entry


def _write(tmp_path: Path, agencies: list[dict[str, Any]]) -> Path:
    path = tmp_path / "directory.json"
    path.write_text(json.dumps({"agencies": agencies}, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture
def directory(tmp_path: Path) -> AgencyDirectory:
    return AgencyDirectory.load(
        _write(
            tmp_path,
            [
                _agency("110000", public_key_to_raw_b64(KEY_A)),
                _agency(
                    "320100",
                    public_key_to_raw_b64(KEY_B),
                    supported_versions={"information_form": [1]},
                    address="南京市",
                ),
            ],
        )
    )


def test_lookups_answer_from_the_file(directory: AgencyDirectory) -> None:
    assert directory.codes == ("110000", "320100")
    assert "110000" in directory and "999999" not in directory
    entry = directory.get("320100")
    assert entry.address == "南京市"
    assert entry.bank_account.bank_name == "中国工商银行"
    assert directory.supported_versions("110000", "information_form") == (1, 2)
    assert directory.supported_versions("320100", "fund_transfer") == ()


def test_the_public_key_verifies_what_the_agency_signed(directory: AgencyDirectory) -> None:
    envelope = Envelope(
        message_id=uuid.uuid4(),
        case_id=uuid.uuid4(),
        type="contact_letter",
        version=1,
        sender="110000",
        recipient="320100",
        sent_at=datetime(2024, 3, 1, 9, 30, tzinfo=UTC),
        payload={"text": "hello"},
    )
    signed = sign_envelope(envelope, KEY_A)
    verify_envelope(signed, directory.public_key("110000"))


@pytest.mark.parametrize(
    "code, known, expected",
    [
        ("110000", (1, 2), 2),  # both speak v2: the newest
        ("110000", (1,), 1),  # we only know v1
        ("320100", (1, 2), 1),  # the recipient only declares v1
        ("320100", (2, 3), None),  # nothing in common
    ],
)
def test_best_version_is_the_newest_common_one(
    directory: AgencyDirectory, code: str, known: tuple[int, ...], expected: int | None
) -> None:
    assert directory.best_version(code, "information_form", known) == expected


def test_best_version_of_a_type_the_agency_does_not_declare_is_none(
    directory: AgencyDirectory,
) -> None:
    assert directory.best_version("320100", "fund_transfer", (1,)) is None


def test_an_unknown_agency_is_a_clear_error(directory: AgencyDirectory) -> None:
    with pytest.raises(UnknownAgency, match="999999"):
        directory.get("999999")
    with pytest.raises(KeyError):
        directory.public_key("999999")


def test_save_then_load_gives_the_same_directory(
    directory: AgencyDirectory, tmp_path: Path
) -> None:
    path = tmp_path / "out" / "directory.json"
    directory.save(path)
    again = AgencyDirectory.load(path)
    assert list(again) == list(directory)
    assert not list(path.parent.glob(".*.tmp"))


def test_with_agency_adds_or_replaces_an_entry(directory: AgencyDirectory) -> None:
    new = AgencyEntry.model_validate(_agency("440100", public_key_to_raw_b64(KEY_B)))
    grown = directory.with_agency(new)
    assert grown.codes == ("110000", "320100", "440100")
    assert directory.codes == ("110000", "320100")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda a: a.update(code="11000"), "agencies.0.code"),
        (lambda a: a.update(public_key="bm90IGEga2V5"), "agencies.0.public_key"),
        (lambda a: a.update(supported_versions={"information_form": []}), "at least one version"),
        (lambda a: a.update(supported_versions={"information_form": [1, 1]}), "repeat"),
        (lambda a: a.update(supported_versions={"information_form": [0]}), "supported_versions"),
        (lambda a: a["bank_account"].update(account_number="12-34"), "account_number"),
        (lambda a: a.pop("bank_account"), "bank_account"),
        (lambda a: a.update(colour="blue"), "colour"),
    ],
)
def test_a_bad_entry_is_rejected_naming_the_field(
    tmp_path: Path, mutate: Any, message: str
) -> None:
    agency = _agency("110000", public_key_to_raw_b64(KEY_A))
    mutate(agency)
    with pytest.raises(DirectoryError, match=message) as caught:
        AgencyDirectory.load(_write(tmp_path, [agency]))
    assert str(tmp_path) in str(caught.value)


def test_a_duplicated_code_is_rejected(tmp_path: Path) -> None:
    twice = [_agency("110000", public_key_to_raw_b64(KEY_A))] * 2
    with pytest.raises(DirectoryError, match="listed twice"):
        AgencyDirectory.load(_write(tmp_path, twice))


def test_a_file_that_is_not_json_or_missing_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(DirectoryError, match="not valid JSON"):
        AgencyDirectory.load(bad)
    with pytest.raises(DirectoryError, match="cannot read"):
        AgencyDirectory.load(tmp_path / "missing.json")
