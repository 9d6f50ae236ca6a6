"""The published contract: checked in, in step with the models, and a faithful independent check.

The JSON Schemas are read with the `jsonschema` package, not with pydantic, so that they are
proven usable by a client that never sees our code. Checks only code can make (and so a schema
cannot): the ID number's check character, birth date and gender digit; Han-only names; sender
differs from recipient; cross-field sums and orders (periods, participation months, amount equal
to balance when transferred); no '.000000' fraction and Z for UTC in sent_at.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from jsonschema import Draft202012Validator
from typer.testing import CliRunner

from schemas import Document, encode_envelope, envelope_for
from schemas.examples import EXAMPLES, example_envelope
from schemas.export import asyncapi_document, render_contract, write_contract
from schemas.registry import MODELS
from tests.unit.schema_strategies import documents

SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"


def validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS_DIR / "json" / name).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def message_of(document: Document) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(encode_envelope(example_envelope(document)))
    return result


def test_checked_in_contract_matches_the_models(tmp_path: Path) -> None:
    write_contract(tmp_path)
    generated = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()}
    checked_in = {p.relative_to(SCHEMAS_DIR) for p in (SCHEMAS_DIR / "json").glob("*.json")} | {
        Path("asyncapi.yaml")
    }
    assert generated == checked_in, "run `jiexu schemas export schemas` and commit the result"
    for relative in sorted(generated):
        assert (tmp_path / relative).read_text(encoding="utf-8") == (SCHEMAS_DIR / relative).read_text(
            encoding="utf-8"
        ), f"{relative} drifted: run `jiexu schemas export schemas`"


def test_rendering_is_deterministic() -> None:
    assert render_contract() == render_contract()


def test_the_cli_writes_the_contract(tmp_path: Path) -> None:
    from agents.cli import app

    result = CliRunner().invoke(app, ["schemas", "export", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "json" / "information_form.v2.json").is_file()
    assert (tmp_path / "out" / "json" / "envelope.json").is_file()
    assert (tmp_path / "out" / "asyncapi.yaml").is_file()


@pytest.mark.parametrize(("message_type", "version"), list(EXAMPLES))
def test_each_example_message_satisfies_its_schema_and_the_envelope_schema(
    message_type: str, version: int
) -> None:
    message = message_of(EXAMPLES[(message_type, version)])
    validator(f"{message_type}.v{version}.json").validate(message)
    validator("envelope.json").validate(message)


@settings(max_examples=200, deadline=None)
@given(documents)
def test_every_valid_message_satisfies_the_published_schema(document: Document) -> None:
    message = json.loads(
        encode_envelope(envelope_for(document, sender="360400", recipient="000000", case_id=_CASE))
    )
    validator(f"{document.MESSAGE_TYPE}.v{document.VERSION}.json").validate(message)


_CASE = EXAMPLES[("statement_request", 1)].model_dump()["case_id"]


def mutate(message: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    target = message
    *parents, last = path.split(".")
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value
    return message


_DELETE = object()

INVALID = [
    ("information_form", 2, "payload.person.id_number", "1234"),
    ("information_form", 2, "payload.person.name", "Zhang Wei"),
    ("information_form", 2, "payload.person.name", "·艾力"),
    ("information_form", 2, "payload.account_balance", -1),
    ("information_form", 2, "payload.months_paid", 1.5),
    ("information_form", 2, "payload.participation_end", "2024-13"),
    ("information_form", 2, "payload.contribution_periods.0.months", 0),
    ("information_form", 2, "payload.insurance_type", "320"),
    ("information_form", 2, "payload.balance_disposition", "no_account"),
    ("information_form", 2, "payload.balance_disposition", "paid_to_person"),
    ("information_form", 2, "payload.seal_reference", _DELETE),
    ("information_form", 2, "payload.unknown", 1),
    ("information_form", 2, "version", 1),
    ("information_form", 1, "payload.contribution_periods", []),
    ("rejection", 1, "payload.reason_code", "too_busy"),
    ("rejection", 1, "payload.text", ""),
    ("fund_transfer", 1, "payload.amount", 0),
    ("fund_transfer", 1, "payload.payer_account.bank_code", "12345"),
    ("reconciliation_result", 1, "payload.outcome", "matched"),
    ("contact_letter", 1, "sent_at", "2025-03-14T09:30:00"),
    ("contact_letter", 1, "sender", "44030"),
    ("contact_letter", 1, "message_id", "not-a-uuid"),
    ("contact_letter", 1, "causation_id", _DELETE),
    ("contact_letter", 1, "extra", True),
    ("contact_letter", 1, "signature", "short=="),
    ("receipt", 1, "type", "rejection"),
]


@pytest.mark.parametrize(("message_type", "version", "path", "value"), INVALID)
def test_the_schema_refuses_what_it_can_express(
    message_type: str, version: int, path: str, value: Any
) -> None:
    message = mutate(message_of(EXAMPLES[(message_type, version)]), path, value)
    errors = list(validator(f"{message_type}.v{version}.json").iter_errors(message))
    assert errors, f"{path}={value!r} should be refused"


def test_the_asyncapi_document_describes_every_message_and_the_topology() -> None:
    document = yaml.safe_load((SCHEMAS_DIR / "asyncapi.yaml").read_text(encoding="utf-8"))
    assert document == json.loads(json.dumps(asyncapi_document()))
    assert document["asyncapi"] == "3.0.0"
    messages = document["components"]["messages"]
    expected = {f"{t}.v{v}" for t, models in MODELS.items() for v in range(1, len(models) + 1)}
    assert set(messages) == expected
    exchange = document["channels"]["exchange"]
    assert exchange["address"] == "agency.{recipient}.{type}"
    assert exchange["bindings"]["amqp"]["exchange"] == {
        "name": "jiexu",
        "type": "topic",
        "durable": True,
        "autoDelete": False,
        "vhost": "/",
    }
    assert document["channels"]["inbox"]["address"] == "jiexu.inbox.{code}"
    assert document["operations"]["send"]["bindings"]["amqp"]["deliveryMode"] == 2
    for key, message in messages.items():
        ref = message["payload"]["schema"]["$ref"]
        assert (SCHEMAS_DIR / ref).is_file(), ref
        headers = message["headers"]["properties"]
        assert headers["x-jiexu-type"]["const"] == message["name"]
        example = message["examples"][0]["payload"]
        schema = json.loads((SCHEMAS_DIR / ref).read_text(encoding="utf-8"))
        Draft202012Validator(schema).validate(example)
        assert key == f"{example['type']}.v{example['version']}"
