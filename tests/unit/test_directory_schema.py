"""The directory file's published JSON Schema agrees with the loader (read with `jsonschema`)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from broker.directory import AgencyDirectory, DirectoryError
from broker.signing import generate_private_key, public_key_to_pem, public_key_to_raw_b64

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "json" / "directory.schema.json"
KEY = generate_private_key()


def validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def entry(**changes: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "code": "110000",
        "name": "北京市医疗保障事务中心",
        "supported_versions": {"information_form": [1, 2], "fund_transfer": [1]},
        "public_key": public_key_to_raw_b64(KEY),
        "bank_account": {
            "bank_name": "中国工商银行",
            "bank_code": "102100099996",
            "account_name": "北京市医保中心",
            "account_number": "0200001234567890123",
        },
    }
    value.update(changes)
    return value


def test_the_schema_states_the_key_encoding() -> None:
    text = SCHEMA.read_text(encoding="utf-8")
    assert "raw 32-byte Ed25519 public key" in text
    assert "base64" in text


def test_a_valid_directory_passes_both() -> None:
    document = {"agencies": [entry(), entry(code="440300")]}
    validator().validate(document)
    assert AgencyDirectory.parse(json.dumps(document)).codes == ("110000", "440300")


@pytest.mark.parametrize(
    "bad",
    [
        entry(public_key=public_key_to_pem(KEY).decode("ascii")),  # PEM is not the contract
        entry(public_key=base64.b64encode(b"\0" * 31).decode("ascii")),  # 31 bytes
        entry(public_key=KEY.public_key().public_bytes_raw().hex()),  # hex
        entry(supported_versions={"information_form": []}),
        entry(supported_versions={"information_form": [1, 1]}),
        entry(supported_versions={"information_form": [0]}),
        entry(supported_versions={"Information-Form": [1]}),
        entry(code="11000"),
        entry(colour="blue"),
    ],
)
def test_what_the_schema_refuses_the_loader_refuses(bad: dict[str, Any]) -> None:
    document = {"agencies": [bad]}
    assert list(validator().iter_errors(document))
    with pytest.raises(DirectoryError):
        AgencyDirectory.parse(json.dumps(document))


def test_schemas_export_writes_the_directory_schema(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from agents.cli import app

    result = CliRunner().invoke(app, ["schemas", "export", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "json" / "directory.schema.json").read_text(encoding="utf-8") == SCHEMA.read_text(
        encoding="utf-8"
    )
