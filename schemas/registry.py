"""(type, version) → model, upcasters and downcasters, and the codec of envelopes.

A receiver decodes an envelope, validates its payload against the model for its (type, version)
and upcasts the document to the newest version, one step ``vN → vN+1`` at a time. A sender builds
the newest version and downcasts it to the newest version the recipient declares
(`negotiate_version`). Every failure is a `ContractError`: dead-letter, never retry.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NoReturn, TypeVar
from uuid import UUID, uuid4

import orjson
from pydantic import ValidationError

from schemas.common import Document
from schemas.contact import (
    ContactLetterV1,
    ContactLetterV2,
    downcast_contact_v2_to_v1,
    upcast_contact_v1_to_v2,
)
from schemas.envelope import Envelope
from schemas.errors import ContractError
from schemas.funds import FundTransferV1
from schemas.information import (
    InformationFormV1,
    InformationFormV2,
    downcast_v2_to_v1,
    upcast_v1_to_v2,
)
from schemas.notices import (
    ReceiptV1,
    RejectionV1,
    RejectionV2,
    ReminderV1,
    TransferCompletedV1,
    TransferCompletedV2,
    downcast_completed_v2_to_v1,
    downcast_rejection_v2_to_v1,
    upcast_completed_v1_to_v2,
    upcast_rejection_v1_to_v2,
)
from schemas.reconciliation import (
    LedgerStatementV1,
    ReconciliationResultV1,
    StatementRequestV1,
)

__all__ = [
    "MAX_JSON_DEPTH",
    "MODELS",
    "Message",
    "MessageType",
    "decode_envelope",
    "decode_envelope_with_raw",
    "downcast",
    "encode_envelope",
    "encode_envelope_data",
    "envelope_for",
    "known_versions",
    "message_types",
    "model_for",
    "negotiate_version",
    "newest_version",
    "parse",
    "upcast",
    "validate_document",
    "validation_detail",
]


class MessageType(StrEnum):
    """Every wire type string."""

    CONTACT_LETTER = "contact_letter"
    INFORMATION_FORM = "information_form"
    FUND_TRANSFER = "fund_transfer"
    RECEIPT = "receipt"
    REJECTION = "rejection"
    TRANSFER_COMPLETED = "transfer_completed"
    REMINDER = "reminder"
    STATEMENT_REQUEST = "statement_request"
    LEDGER_STATEMENT = "ledger_statement"
    RECONCILIATION_RESULT = "reconciliation_result"


MODELS: Mapping[str, tuple[type[Document], ...]] = {
    MessageType.CONTACT_LETTER.value: (ContactLetterV1, ContactLetterV2),
    MessageType.INFORMATION_FORM.value: (InformationFormV1, InformationFormV2),
    MessageType.FUND_TRANSFER.value: (FundTransferV1,),
    MessageType.RECEIPT.value: (ReceiptV1,),
    MessageType.REJECTION.value: (RejectionV1, RejectionV2),
    MessageType.TRANSFER_COMPLETED.value: (TransferCompletedV1, TransferCompletedV2),
    MessageType.REMINDER.value: (ReminderV1,),
    MessageType.STATEMENT_REQUEST.value: (StatementRequestV1,),
    MessageType.LEDGER_STATEMENT.value: (LedgerStatementV1,),
    MessageType.RECONCILIATION_RESULT.value: (ReconciliationResultV1,),
}
"""Each type's models, oldest first; the model at index i is version i + 1."""

_D = TypeVar("_D", bound=Document)
_E = TypeVar("_E", bound=Document)


def _step(source: type[_D], target: type[_E], convert: Callable[[_D], _E]) -> Callable[[Document], Document]:
    def run(document: Document) -> Document:
        if not isinstance(document, source):
            raise TypeError(f"expected {source.__name__}, got {type(document).__name__}")
        return convert(document)

    run.__name__ = f"{source.__name__}_to_{target.__name__}"
    return run


_UPCASTERS: Mapping[tuple[str, int], Callable[[Document], Document]] = {
    (MessageType.CONTACT_LETTER.value, 1): _step(ContactLetterV1, ContactLetterV2, upcast_contact_v1_to_v2),
    (MessageType.INFORMATION_FORM.value, 1): _step(InformationFormV1, InformationFormV2, upcast_v1_to_v2),
    (MessageType.TRANSFER_COMPLETED.value, 1): _step(
        TransferCompletedV1, TransferCompletedV2, upcast_completed_v1_to_v2
    ),
    (MessageType.REJECTION.value, 1): _step(RejectionV1, RejectionV2, upcast_rejection_v1_to_v2),
}
"""(type, N) → the function taking version N to N + 1."""

_DOWNCASTERS: Mapping[tuple[str, int], Callable[[Document], Document]] = {
    (MessageType.CONTACT_LETTER.value, 2): _step(ContactLetterV2, ContactLetterV1, downcast_contact_v2_to_v1),
    (MessageType.INFORMATION_FORM.value, 2): _step(InformationFormV2, InformationFormV1, downcast_v2_to_v1),
    (MessageType.TRANSFER_COMPLETED.value, 2): _step(
        TransferCompletedV2, TransferCompletedV1, downcast_completed_v2_to_v1
    ),
    (MessageType.REJECTION.value, 2): _step(RejectionV2, RejectionV1, downcast_rejection_v2_to_v1),
}
"""(type, N) → the function taking version N to N - 1."""


def _check_registry() -> None:
    for message_type, models in MODELS.items():
        for index, model in enumerate(models):
            version = index + 1
            if (message_type, version) != (model.MESSAGE_TYPE, model.VERSION):
                raise AssertionError(f"{model.__name__} registered as {message_type} v{version}")
            if version > 1 and (message_type, version - 1) not in _UPCASTERS:
                raise AssertionError(f"no upcaster for {message_type} v{version - 1}")


_check_registry()


@dataclass(frozen=True)
class Message:
    """A decoded envelope with its document, upcast to the newest version of its type."""

    envelope: Envelope
    document: Document


def message_types() -> tuple[str, ...]:
    return tuple(MODELS)


def _models(message_type: str) -> tuple[type[Document], ...]:
    try:
        return MODELS[message_type]
    except KeyError:
        raise ContractError(
            "unknown_type",
            f"message type {message_type!r} is not known; known types: {', '.join(MODELS)}",
        ) from None


def known_versions(message_type: str) -> tuple[int, ...]:
    return tuple(range(1, len(_models(message_type)) + 1))


def newest_version(message_type: str) -> int:
    return len(_models(message_type))


def model_for(message_type: str, version: int) -> type[Document]:
    models = _models(message_type)
    if not 1 <= version <= len(models):
        versions = ", ".join(str(known) for known in known_versions(message_type))
        raise ContractError(
            "unknown_version",
            f"{message_type} version {version} is not known; known versions: {versions}",
        )
    return models[version - 1]


def negotiate_version(message_type: str, supported: Iterable[int]) -> int:
    """The newest version of ``message_type`` that both we and the recipient know."""
    common = set(known_versions(message_type)) & set(supported)
    if not common:
        raise ContractError(
            "no_common_version",
            f"the recipient supports no version of {message_type} that we know",
        )
    return max(common)


def _location(loc: tuple[int | str, ...], prefix: str) -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else part
    return path or "(root)"


def validation_detail(error: ValidationError, prefix: str = "", limit: int = 10) -> str:
    """Each problem as ``field.path: why``, without the offending values (they may be PII)."""
    problems = error.errors(include_input=False, include_url=False, include_context=False)
    parts = [f"{_location(problem['loc'], prefix)}: {problem['msg']}" for problem in problems]
    if len(parts) > limit:
        parts = [*parts[:limit], f"and {len(parts) - limit} more"]
    return "; ".join(parts)


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Duplicate keys make a document mean different things to different parsers, and so to a
    # signature verifier and a handler: refuse them.
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r}")
            seen.add(key)
    return result


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


MAX_JSON_DEPTH = 64
"""Deepest nesting of objects and arrays a body may have (an envelope needs 5): deeper is
``invalid_json``, a contract error (dead-lettered), never a `RecursionError` retried as transient."""


def _check_depth(data: Any) -> Any:
    if not isinstance(data, dict | list):
        return data
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > MAX_JSON_DEPTH:
                    raise ContractError(
                        "invalid_json", f"nested deeper than {MAX_JSON_DEPTH} objects or arrays"
                    )
                stack.append((child, depth + 1))
    return data


def _loads(body: bytes) -> Any:
    """Parse a body strictly: UTF-8, no duplicate keys, no NaN or Infinity, nesting at most
    `MAX_JSON_DEPTH` deep.

    The fast path parses with orjson and accepts the result only if writing it back gives the
    body byte for byte, which proves that no object had a duplicate key (orjson keeps the last
    value of a repeated key, so the rewrite would be shorter). Every body jiexu writes takes it.
    Anything else (another client's spacing or escapes, duplicates, what orjson refuses) is
    parsed again by `json` with a hook that names the duplicate key, as it always was.
    """
    try:
        data = orjson.loads(body)
        if orjson.dumps(data) == body:
            return _check_depth(data)
    except (orjson.JSONDecodeError, TypeError):
        pass
    try:
        return _check_depth(
            json.loads(
                body.decode("utf-8"),
                object_pairs_hook=_reject_duplicate_keys,
                parse_constant=_reject_constant,
            )
        )
    except RecursionError:
        detail = f"nested deeper than {MAX_JSON_DEPTH} objects or arrays"
        raise ContractError("invalid_json", detail) from None
    except UnicodeDecodeError as error:
        raise ContractError("invalid_json", f"body is not UTF-8: {error.reason}") from None
    except ValueError as error:  # json.JSONDecodeError is a ValueError
        raise ContractError("invalid_json", str(error)) from None


def decode_envelope_with_raw(body: bytes) -> tuple[Envelope, dict[str, Any]]:
    """`decode_envelope`, and the JSON object it was decoded from (parsed once).

    The object is what the sender wrote and signed: verify the signature over it
    (`broker.signing.verify_envelope`), not over a re-serialisation of the model. Do not
    mutate it.
    """
    data = _loads(body)
    if not isinstance(data, dict):
        raise ContractError("invalid_envelope", "the body must be a JSON object")
    if "causation_id" not in data:
        # Signatures cover every member; an absent one would re-serialise as null.
        raise ContractError(
            "invalid_envelope", "causation_id: Field required (null when answering no message)"
        )
    try:
        return Envelope.model_validate(data), data
    except ValidationError as error:
        raise ContractError("invalid_envelope", validation_detail(error)) from None


def decode_envelope(body: bytes) -> Envelope:
    """JSON and envelope-level validation only; the payload stays an unchecked dict."""
    return decode_envelope_with_raw(body)[0]


def validate_document(envelope: Envelope) -> Document:
    """The payload validated against its (type, version) model, upcast to the newest version."""
    model = model_for(envelope.type, envelope.version)
    try:
        document = model.model_validate(envelope.payload)
    except ValidationError as error:
        raise ContractError(
            "invalid_payload",
            f"{envelope.type} v{envelope.version}: {validation_detail(error, 'payload')}",
        ) from None
    return upcast(document)


def parse(body: bytes) -> Message:
    envelope = decode_envelope(body)
    return Message(envelope=envelope, document=validate_document(envelope))


def encode_envelope(envelope: Envelope) -> bytes:
    """Compact UTF-8 JSON, fields in model order."""
    return encode_envelope_data(envelope.model_dump(mode="json"))


def encode_envelope_data(data: Mapping[str, Any]) -> bytes:
    """`encode_envelope` of an envelope already dumped with ``model_dump(mode="json")``."""
    try:
        return orjson.dumps(data)
    except TypeError:  # what orjson will not write (an integer beyond 64 bits, a lone surrogate)
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _convert(
    document: Document,
    steps: Mapping[tuple[str, int], Callable[[Document], Document]],
    delta: int,
    target: int,
) -> Document:
    while target != document.VERSION:
        step = steps.get((document.MESSAGE_TYPE, document.VERSION))
        if step is None:
            direction = "up" if delta > 0 else "down"
            raise ContractError(
                "unknown_version",
                f"cannot convert {document.MESSAGE_TYPE} v{document.VERSION} {direction} to v{target}",
            )
        try:
            document = step(document)
        except ValidationError as error:
            raise ContractError(
                "invalid_payload",
                f"{document.MESSAGE_TYPE} v{document.VERSION} does not convert to "
                f"v{document.VERSION + delta}: {validation_detail(error)}",
            ) from None
    return document


def upcast(document: Document) -> Document:
    """To the newest version of its type, one version at a time."""
    return _convert(document, _UPCASTERS, +1, newest_version(document.MESSAGE_TYPE))


def downcast(document: Document, version: int) -> Document:
    """To ``version`` of its type (older, or newer by upcasting); ContractError if impossible."""
    model_for(document.MESSAGE_TYPE, version)
    if version >= document.VERSION:
        return _convert(document, _UPCASTERS, +1, version)
    return _convert(document, _DOWNCASTERS, -1, version)


def envelope_for(
    document: Document,
    *,
    sender: str,
    recipient: str,
    case_id: UUID,
    causation_id: UUID | None = None,
    version: int | None = None,
    message_id: UUID | None = None,
    sent_at: datetime | None = None,
) -> Envelope:
    """An unsigned envelope carrying ``document`` (converted to ``version`` if given).

    Raises `ContractError` (``invalid_envelope``) if the fields do not make a valid envelope,
    e.g. a sender equal to the recipient or a naive ``sent_at``.
    """
    if version is not None:
        document = downcast(document, version)
    try:
        return Envelope(
            message_id=message_id if message_id is not None else uuid4(),
            case_id=case_id,
            causation_id=causation_id,
            type=document.MESSAGE_TYPE,
            version=document.VERSION,
            sender=sender,
            recipient=recipient,
            sent_at=sent_at if sent_at is not None else datetime.now(UTC),
            payload=document.model_dump(mode="json"),
        )
    except ValidationError as error:
        raise ContractError("invalid_envelope", validation_detail(error)) from None
