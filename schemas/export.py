"""The published contract: JSON Schemas and an AsyncAPI document, generated from the models.

`render_contract` is pure and deterministic (same models, same bytes), so the checked-in files
under ``schemas/json/`` and ``schemas/asyncapi.yaml`` can be compared with a fresh render.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

from schemas import names
from schemas.common import Document
from schemas.directory import DirectoryFile
from schemas.envelope import SIGNATURE_PATTERN, Envelope
from schemas.examples import EXAMPLES, example_envelope
from schemas.protocol import STEPS, Step
from schemas.registry import MODELS

__all__ = [
    "CONTRACT_VERSION",
    "INTEGER_RULE",
    "SCHEMA_DIALECT",
    "SENT_AT_RULE",
    "asyncapi_document",
    "directory_schema",
    "envelope_schema",
    "message_schema",
    "render_contract",
    "schema_filename",
    "write_contract",
]

CONTRACT_VERSION = "1.1.0"
"""Version of the published contract as a whole; bump it when any schema changes."""

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_ID_BASE = "urn:jiexu:schema:"
_BINDING_VERSION = "0.3.0"
_PARAM_CODE = "{code}"

INTEGER_RULE = (
    "Integers (version, amounts in fen, months) are JSON numbers written without a fraction or "
    "an exponent: 12, never 12.0 or 1.2e1 (JSON Schema 2020-12 would accept those as integers; "
    "jiexu refuses them: invalid_envelope or invalid_payload). Every integer n in a message "
    "satisfies |n| <= 2^53-1 (9007199254740991), so RFC 8785 writes it exactly; the models' own "
    "bounds are tighter (amounts <= 10^15 fen, months <= 1200)."
)
"""How the contract reads integers; stated in the envelope schema and the AsyncAPI document."""

SENT_AT_RULE = (
    "sent_at is a string, never a number (a Unix time is refused): "
    "YYYY-MM-DDTHH:MM:SS[.ffffff] then Z or +HH:MM, a 6-digit fraction or none (not .000000), Z "
    "for UTC."
)

_CODE_ONLY_ENVELOPE = (
    "Checked in code only: sender differs from recipient; sent_at has no '.000000' fraction "
    "and writes UTC as Z; the signature verifies against the sender's key. "
    + INTEGER_RULE
)


def schema_filename(message_type: str, version: int) -> str:
    return f"{message_type}.v{version}.json"


def envelope_schema() -> dict[str, Any]:
    """Any envelope, payload unchecked: what `decode_envelope` accepts."""
    schema = Envelope.model_json_schema()
    body: dict[str, Any] = {
        "$schema": SCHEMA_DIALECT,
        "$id": f"{_ID_BASE}envelope",
        **schema,
    }
    body["required"] = list(Envelope.model_fields)
    body["required"].remove("signature")
    body["$comment"] = _CODE_ONLY_ENVELOPE
    body["description"] = f"{body.get('description', '')} {INTEGER_RULE} {SENT_AT_RULE}".strip()
    properties = body["properties"]
    properties["signature"] = {
        "anyOf": [{"type": "string", "pattern": SIGNATURE_PATTERN}, {"type": "null"}],
        "default": None,
        "description": properties["signature"]["description"]
        + " Receivers dead-letter a message without a valid one.",
        "title": "Signature",
    }
    return body


def directory_schema() -> dict[str, Any]:
    """The agency directory file (`schemas.directory.DirectoryFile`)."""
    schema = DirectoryFile.model_json_schema()
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": f"{_ID_BASE}directory",
        **schema,
        "description": (DirectoryFile.__doc__ or "").strip()
        + " Shared by every agency; it holds no secrets. public_key is base64 (standard "
        "alphabet, padded) of the raw 32-byte Ed25519 public key.",
    }


def message_schema(message_type: str, version: int) -> dict[str, Any]:
    """A whole message of one (type, version): the envelope with its payload's document schema."""
    model: type[Document] = MODELS[message_type][version - 1]
    document = model.model_json_schema()
    defs: dict[str, Any] = document.pop("$defs", {})
    defs[model.__name__] = document
    body = envelope_schema()
    body["$id"] = f"{_ID_BASE}{message_type}.v{version}"
    body["title"] = f"{message_type} v{version}"
    body["description"] = (model.__doc__ or "").strip().splitlines()[0]
    properties = body["properties"]
    properties["type"] = {"const": message_type, "title": "Type"}
    properties["version"] = {"const": version, "title": "Version"}
    properties["payload"] = {"$ref": f"#/$defs/{model.__name__}"}
    body["$defs"] = dict(sorted(defs.items()))
    return body


def _message_key(message_type: str, version: int) -> str:
    return f"{message_type}.v{version}"


def _who(peer: str) -> str:
    return {"both": "each agency", "reconciler": f"the reconciler ({names.RECONCILER_CODE})"}.get(
        peer, f"the {peer} agency"
    )


def _when(step: Step) -> str:
    return step.when.replace("(section 5)", "(docs/protocol.md, section 5)")


def _causation(step: Step) -> str:
    return " or ".join(f"the {c}'s message_id" if c else "null" for c in step.causations)


def _message_description(message_type: str) -> str:
    """Who sends this type to whom, in answer to what (docs/protocol.md, sections 3-5)."""
    lines = []
    for step in STEPS:
        if step.action == "send" and step.message_type == message_type:
            sender = "The reconciler" if step.role == "reconciler" else f"The {step.role} agency"
            lines.append(
                f"- {sender} sends it to {_who(step.peer)}; causation_id: {_causation(step)}. "
                f"{_when(step)}"
            )
    if not lines:
        lines.append("- Defined by the contract; jiexu sends none today (see docs/protocol.md).")
    return "\n".join(lines)


def _role_operations(refs: dict[str, list[str]]) -> dict[str, Any]:
    """One operation per (role, action, type, peer) of `schemas.protocol.STEPS`."""
    grouped: dict[str, list[Step]] = {}
    for step in STEPS:
        key = f"{step.role}.{step.action}.{step.message_type}.{step.peer}"
        grouped.setdefault(key, []).append(step)
    operations: dict[str, Any] = {}
    for key, steps in grouped.items():
        first = steps[0]
        channel = "exchange" if first.action == "send" else "inbox"
        reasons = sorted({r.value for s in steps for r in s.reasons})
        text = " ".join(
            f"causation_id: {_causation(s)}. {_when(s)}" for s in steps
        ) + (f" Reason codes: {', '.join(reasons)}." if reasons else "")
        operations[key] = {
            "action": first.action,
            "title": f"{first.role}: {first.action} {first.message_type} "
            f"{'to' if first.action == 'send' else 'from'} {_who(first.peer)}",
            "description": f"Step {first.order} of the {first.role} role. {text}",
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": [
                {"$ref": f"#/channels/{channel}/messages/{ref}"} for ref in refs[first.message_type]
            ],
            "tags": [{"name": first.role}],
        }
    return operations


def _message_component(message_type: str, version: int) -> dict[str, Any]:
    model = MODELS[message_type][version - 1]
    example = example_envelope(EXAMPLES[(message_type, version)]).model_dump(mode="json")
    newest = len(MODELS[message_type])
    summary = (model.__doc__ or "").strip().splitlines()[0]
    return {
        "name": message_type,
        "title": f"{message_type} v{version}" + (" (newest)" if version == newest else ""),
        "summary": summary,
        "description": _message_description(message_type),
        "contentType": "application/json",
        "correlationId": {
            "description": "The case: AMQP correlation_id equals the envelope's case_id.",
            "location": "$message.payload#/case_id",
        },
        "headers": {
            "type": "object",
            "required": ["x-jiexu-type", "x-jiexu-version"],
            "properties": {
                "x-jiexu-type": {"type": "string", "const": message_type},
                "x-jiexu-version": {"type": "integer", "const": version},
            },
        },
        "payload": {
            "schemaFormat": "application/schema+json;version=2020-12",
            "schema": {"$ref": f"./json/{schema_filename(message_type, version)}"},
        },
        "bindings": {
            "amqp": {"messageType": message_type, "bindingVersion": _BINDING_VERSION},
        },
        "x-amqp-properties": {
            "message_id": "the envelope's message_id",
            "correlation_id": "the envelope's case_id",
            "type": message_type,
            "user_id": f"{names.agency_user('{sender}')} (the broker validates it)",
            "timestamp": "the envelope's sent_at, in whole seconds",
            "content_type": "application/json",
            "delivery_mode": 2,
        },
        "examples": [
            {
                "name": f"{message_type}_v{version}",
                "headers": {"x-jiexu-type": message_type, "x-jiexu-version": version},
                "payload": example,
            }
        ],
    }


_DESCRIPTION = f"""\
jiexu (接续) carries the documents of a transfer of a basic medical insurance relationship
(医保关系转移接续) between agencies. Every agency is identified by its 6-digit region code
(医保区划); the reconciliation agent uses `{names.RECONCILER_CODE}`.

## Envelope
Every message body is one UTF-8 JSON object, the envelope (`json/envelope.json`): `message_id`,
`case_id`, `causation_id`, `type`, `version`, `sender`, `recipient`, `sent_at`, `payload`,
`signature`. The payload is the document of (`type`, `version`): `json/<type>.v<version>.json`
validates a whole message of that kind. Amounts are integer fen (分); time is whole months;
ID numbers (公民身份号码) carry a GB 11643 check character; names are Chinese characters with
middle dots (·) between parts. Unknown members are refused everywhere.

## Signature
`signature` is the standard, padded base64 of an Ed25519 signature over the RFC 8785 (JCS)
canonical JSON of the envelope object without its `signature` member. The envelope admits one
text form per value (lowercase UUIDs; `sent_at` as `YYYY-MM-DDTHH:MM:SS[.ffffff](Z|+HH:MM)`, Z
for UTC; `causation_id` always present, null when none), so the sender's bytes and the
receiver's reading canonicalise alike. The key is the one the agency directory lists for the
`sender`; the `sender` must equal the broker user that published the message.

## Versions
A receiver accepts every version it knows and upcasts to the newest. A sender sends the newest
version both it and the recipient declare in the agency directory; a case keeps the versions
chosen when it opened. `information_form` has v1 and v2 (v2 adds `contribution_periods` and `seal_reference`;
they are null in a form upcast from v1). A message of an unknown type or version is
dead-lettered with the reason, never retried.

## Limits and who may send what
A body is at most 1 MiB of UTF-8 JSON, nested at most 64 objects or arrays deep, without duplicate
keys, NaN or Infinity (else `too_large` or `invalid_json`). `sent_at` must lie within the
recipient's freshness window: by default no more than 30 days old and no more than 10 minutes
ahead of its clock (else `stale`). A document for a case is accepted only from that case's
counterpart; `statement_request` only from the reconciliation agent (else `wrong_sender`). A
receiver remembers handled messages by sender and `message_id`. Each of these is dead-lettered at
once, never retried.

## Transport (RabbitMQ, AMQP 0-9-1)
Publish to the durable topic exchange `{names.EXCHANGE}` with routing key
`{names.routing_key("{recipient}", "{type}")}`, `mandatory`, persistent (`delivery_mode` 2),
with publisher confirms, and the AMQP properties: `message_id` = envelope message_id,
`correlation_id` = case_id, `type` = envelope type, `user_id` = `{names.agency_user("{code}")}`
(the sender's broker user, validated by the broker), `timestamp` = sent_at,
`content_type` `application/json`; headers `x-jiexu-type` and `x-jiexu-version` repeat the
type and version. Each agency consumes only its own quorum queue
`{names.inbox_queue("{code}")}`, bound with `{names.inbox_binding("{code}")}`. Messages that
cannot be handled go through the agency's own dead-letter exchange `{names.agency_dlx("{code}")}`
(the broker's, at the delivery limit: `{names.DLX}`) to `{names.dlq_queue("{code}")}` with the
reason in their headers; transient failures wait in retry queues (through the agency's own
`{names.agency_retry_exchange("{code}")}`) and return through `{names.RETRY_EXCHANGE}`. Only the
agency itself may publish to its own two exchanges; every queue has a length and byte limit and
refuses (nacks) a publish beyond it. Unroutable messages reach the alternate exchange
`{names.UNROUTABLE_EXCHANGE}` (queue `{names.UNROUTABLE_QUEUE}`).

The AMQP `message_id`, `correlation_id`, `type` and the headers `x-jiexu-type`,
`x-jiexu-version` must be present and equal to the envelope: otherwise the message is
dead-lettered `property_mismatch`. Broker users are `{names.agency_user("CODE")}`
(`{names.agency_user("CODE", "PREFIX")}` on a broker shared by several deployments); the
exchange's operator issues each agency its credentials. Bodies are at most 1 MiB.

## Numbers and time
{INTEGER_RULE} {SENT_AT_RULE}

## The protocol
Operations named `ROLE.ACTION.TYPE.PEER` give, per role (receiving, outgoing, reconciler), each
message it sends or accepts, in order, with the `causation_id` it carries. Agencies copy the
reconciler (`{names.RECONCILER_CODE}`) on every `information_form`, `transfer_completed` and
`rejection` they send, and answer each `statement_request` with a `ledger_statement` whose
`causation_id` is the request's `message_id`. Each document of a case an agency commits from the
other agency is answered with a signed `receipt` (causation and `acknowledged_message_id` = the
document's `message_id`), kept by its sender as evidence of delivery. The whole protocol,
with rejection reasons, dead-letter reasons, retries and duplicates (`x-jiexu-republished`), is
`docs/protocol.md`; test vectors are in `vectors/`.
"""


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.0 description of the exchange, the queues and every message."""
    keys = [(t, v) for t, models in MODELS.items() for v in range(1, len(models) + 1)]
    message_refs = {
        _message_key(t, v): {"$ref": f"#/components/messages/{_message_key(t, v)}"} for t, v in keys
    }
    code_parameter = {
        "description": "A 6-digit agency code (region code; 000000 is the reconciliation agent).",
        "examples": ["440300", "360400"],
    }
    amqp_queue = {
        "durable": True,
        "exclusive": False,
        "autoDelete": False,
        "vhost": "/",
    }
    return {
        "asyncapi": "3.0.0",
        "id": "urn:jiexu:exchange",
        "info": {
            "title": "jiexu — medical-insurance relationship transfer exchange",
            "version": CONTRACT_VERSION,
            "description": _DESCRIPTION,
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "rabbitmq": {
                "host": "{host}:{port}",
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "description": "The exchange's RabbitMQ broker (a cluster at scale).",
                "variables": {
                    "host": {"default": "localhost"},
                    "port": {"default": "5672", "enum": ["5672", "5671"]},
                },
            }
        },
        "channels": {
            "exchange": {
                "address": names.routing_key("{recipient}", "{type}"),
                "title": f"The {names.EXCHANGE} topic exchange",
                "description": "Every agency publishes here; the routing key names the "
                "recipient and the message type.",
                "parameters": {
                    "recipient": code_parameter,
                    "type": {"enum": list(MODELS), "description": "The envelope's type."},
                },
                "messages": message_refs,
                "bindings": {
                    "amqp": {
                        "is": "routingKey",
                        "exchange": {
                            "name": names.EXCHANGE,
                            "type": "topic",
                            "durable": True,
                            "autoDelete": False,
                            "vhost": "/",
                        },
                        "bindingVersion": _BINDING_VERSION,
                    }
                },
            },
            "inbox": {
                "address": names.inbox_queue(_PARAM_CODE),
                "title": "An agency's inbox",
                "description": "Quorum queue of one agency, bound to "
                f"{names.EXCHANGE} with {names.inbox_binding(_PARAM_CODE)}; "
                "only that agency's broker user may read it.",
                "parameters": {"code": code_parameter},
                "messages": message_refs,
                "bindings": {
                    "amqp": {
                        "is": "queue",
                        "queue": {"name": names.inbox_queue(_PARAM_CODE), **amqp_queue},
                        "bindingVersion": _BINDING_VERSION,
                    }
                },
            },
            "deadLetters": {
                "address": names.dlq_queue(_PARAM_CODE),
                "title": "An agency's dead-letter queue",
                "description": f"Messages from {names.inbox_queue(_PARAM_CODE)} that were "
                f"rejected (invalid, unknown version, bad signature, failing handler), routed "
                f"by {names.agency_dlx(_PARAM_CODE)} (or by {names.DLX} at the delivery limit) with "
                "the reason in their headers; operators list and replay "
                "them.",
                "parameters": {"code": code_parameter},
                "messages": message_refs,
                "bindings": {
                    "amqp": {
                        "is": "queue",
                        "queue": {"name": names.dlq_queue(_PARAM_CODE), **amqp_queue},
                        "bindingVersion": _BINDING_VERSION,
                    }
                },
            },
        },
        "operations": {
            "send": {
                "action": "send",
                "title": "An agency sends a message to another",
                "channel": {"$ref": "#/channels/exchange"},
                "messages": [{"$ref": f"#/channels/exchange/messages/{_message_key(t, v)}"} for t, v in keys],
                "bindings": {
                    "amqp": {
                        "deliveryMode": 2,
                        "mandatory": True,
                        "timestamp": True,
                        "userId": names.agency_user("{sender}"),
                        "bindingVersion": _BINDING_VERSION,
                    }
                },
            },
            "receive": {
                "action": "receive",
                "title": "An agency consumes its inbox",
                "description": "Manual acknowledgement after the agency's own commit; a "
                "redelivered message is recognised by its message_id and has no second effect.",
                "channel": {"$ref": "#/channels/inbox"},
                "messages": [{"$ref": f"#/channels/inbox/messages/{_message_key(t, v)}"} for t, v in keys],
                "bindings": {"amqp": {"ack": True, "bindingVersion": _BINDING_VERSION}},
            },
            **_role_operations(
                {
                    t: [_message_key(t, v) for v in range(1, len(models) + 1)]
                    for t, models in MODELS.items()
                }
            ),
        },
        "components": {
            "messages": {_message_key(t, v): _message_component(t, v) for t, v in keys},
        },
    }


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings as literal blocks, so the description reads as Markdown."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def _json_text(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def render_contract() -> dict[str, str]:
    """Relative path → file content of every published file."""
    files = {
        "json/envelope.json": _json_text(envelope_schema()),
        "json/directory.schema.json": _json_text(directory_schema()),
    }
    for message_type, models in MODELS.items():
        for version in range(1, len(models) + 1):
            path = f"json/{schema_filename(message_type, version)}"
            files[path] = _json_text(message_schema(message_type, version))
    document = copy.deepcopy(asyncapi_document())
    files["asyncapi.yaml"] = "# Generated by `jiexu schemas export`; do not edit.\n" + yaml.dump(
        document,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=100,
        default_flow_style=False,
    )
    return files


def write_contract(directory: Path) -> list[Path]:
    """Write every published file under ``directory`` (``json/`` and ``asyncapi.yaml``)."""
    written: list[Path] = []
    for relative, content in render_contract().items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        written.append(path)
    return written
