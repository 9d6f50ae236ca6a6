"""The protocol as data: who sends what, in answer to what, and what it obliges; and
``docs/protocol.md``, rendered from it and from the registry, the names and the limits.

The tables here are checked against the code that acts on them (``tests/unit/test_protocol.py``):
what each role sends (`agents.domain.case`), the causation each message carries (a whole
conversation run in memory), the copies to the reconciler (`agents.service.agency`), the AMQP
properties the consumer compares (`broker.properties`), the body limit (`broker.consumer`); and
``docs/protocol.md`` must equal `render_protocol` (``jiexu schemas protocol docs/protocol.md``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas import names
from schemas.common import MAX_FEN, MAX_MONTHS
from schemas.notices import RejectionReason
from schemas.registry import MAX_JSON_DEPTH, MODELS, model_for

__all__ = [
    "BODY_LIMIT_BYTES",
    "PROPERTY_RULES",
    "RECEIPTED",
    "RECONCILER_COPIES",
    "ROLES",
    "STEPS",
    "Step",
    "render_protocol",
    "string_limits",
    "write_protocol",
]

BODY_LIMIT_BYTES = 1024 * 1024
"""A body larger than this is dead-lettered (``too_large``) unread."""

RECONCILER_COPIES = ("information_form", "transfer_completed", "rejection")
"""What an agency copies to the reconciler (000000) of what it sends its counterpart."""

RECEIPTED = (
    "contact_letter",
    "information_form",
    "fund_transfer",
    "transfer_completed",
    "rejection",
    "reminder",
)
"""The documents of a case between its two agencies: each one an agency commits (records as
handled) is answered with a signed ``receipt`` to its sender, causation = the document."""

PROPERTY_RULES: tuple[tuple[str, str], ...] = (
    ("message_id", "message_id"),
    ("correlation_id", "case_id"),
    ("type", "type"),
    ("headers[x-jiexu-type]", "type"),
    ("headers[x-jiexu-version]", "version"),
)
"""(AMQP property or header, envelope field) that must be present and equal."""

ROLES = ("receiving", "outgoing", "reconciler")


@dataclass(frozen=True)
class Step:
    role: str
    """Who acts: receiving, outgoing, reconciler."""
    order: int
    action: str
    """send or receive."""
    message_type: str
    peer: str
    """The other party: receiving, outgoing, reconciler, or both (the reconciler's sends)."""
    causation: str | None
    """The type of the message whose message_id is this one's causation_id (None: null)."""
    when: str
    reasons: tuple[RejectionReason, ...] = ()
    """For a rejection: the reason codes this step may carry."""
    also: tuple[str, ...] = ()
    """Other types the causation may name (a copy keeps its original's causation)."""

    @property
    def causations(self) -> tuple[str | None, ...]:
        return (self.causation, *self.also)


_R = RejectionReason
STEPS: tuple[Step, ...] = (
    # -- the receiving agency (转入地) -----------------------------------------------------------
    Step("receiving", 1, "send", "contact_letter", "outgoing", None,
         "The person's application is accepted here: opens the case (a new case_id). An "
         "application refused here (duplicate_case, not_enrolled_at_receiving_place, "
         "invalid_document, other) sends nothing."),
    Step("receiving", 2, "receive", "information_form", "outgoing", "contact_letter",
         "Checked against the letter: the person, the disposition asked for."),
    Step("receiving", 2, "receive", "fund_transfer", "outgoing", "contact_letter",
         "Only when the form's balance_disposition is transferred; may arrive before the form "
         "(held until the form arrives, never refused for its order)."),
    Step("receiving", 3, "send", "transfer_completed", "outgoing", "information_form",
         "Form (and funds, when transferred, equal to amount_transferred) in hand and credited: "
         "what was credited. Ends the case."),
    Step("receiving", 3, "send", "rejection", "outgoing", "information_form",
         "The form is refused (invalid_document: another person, or a disposition not as "
         "asked), or the books refuse the credit (other). Ends the case as a discrepancy.",
         (_R.INVALID_DOCUMENT, _R.AMOUNT_MISMATCH, _R.OTHER)),
    Step("receiving", 3, "send", "rejection", "outgoing", "fund_transfer",
         "The money received differs from the form's amount_transferred (amount_mismatch); the "
         "causation is whichever of the form or the funds completed the pair (information_form "
         "when the form came last).",
         (_R.AMOUNT_MISMATCH,)),
    Step("receiving", 4, "receive", "rejection", "outgoing", "contact_letter",
         "The outgoing agency refuses the letter: the case ends rejected with its reason."),
    Step("receiving", 4, "send", "rejection", "outgoing", "contact_letter",
         "The application is withdrawn (`jiexu case cancel`) before any form or money arrived: "
         "the case ends cancelled and the person may apply again. Rejection v2 with reason "
         "withdrawn; an agency that declares only v1 receives reason other with the same text.",
         (_R.WITHDRAWN,)),
    Step("receiving", 5, "send", "transfer_completed", "reconciler", "information_form",
         "A copy of the completion (section 5)."),
    Step("receiving", 5, "send", "rejection", "reconciler", "information_form",
         "A copy of a rejection it sent (section 5).", also=("fund_transfer",)),
    Step("receiving", 6, "receive", "statement_request", "reconciler", None,
         "After the case ends (or as a probe): obliges the next step."),
    Step("receiving", 7, "send", "ledger_statement", "reconciler", "statement_request",
         "What its books credited for the case (section 5)."),
    Step("receiving", 8, "receive", "reconciliation_result", "reconciler", "ledger_statement",
         "Whether both books agree; informative."),
    Step("receiving", 9, "send", "reminder", "outgoing", "contact_letter",
         "The form or the funds are overdue (working days of the agency's regime)."),
    Step("receiving", 9, "receive", "reminder", "outgoing", "information_form",
         "The outgoing agency waits for the completion; informative."),
    Step("receiving", 10, "send", "receipt", "outgoing", "information_form",
         "For every document of the case received from the outgoing agency and committed, once "
         "(section 9).", also=("fund_transfer", "rejection", "reminder")),
    Step("receiving", 10, "receive", "receipt", "outgoing", "contact_letter",
         "The outgoing agency's receipt for a document sent to it: kept in the case as evidence "
         "of delivery (section 9).", also=("transfer_completed", "rejection", "reminder")),
    # -- the outgoing agency (转出地) ------------------------------------------------------------
    Step("outgoing", 1, "receive", "contact_letter", "receiving", None,
         "Opens the case at this end (the letter's case_id)."),
    Step("outgoing", 2, "send", "rejection", "receiving", "contact_letter",
         "The letter cannot be served. Ends the case.",
         (_R.DUPLICATE_CASE, _R.INVALID_DOCUMENT, _R.UNKNOWN_PERSON,
          _R.PARTICIPATION_NOT_STOPPED, _R.ARREARS, _R.RETIREE, _R.OTHER)),
    Step("outgoing", 2, "send", "information_form", "receiving", "contact_letter",
         "The relationship is ended here and the books certify the months and the balance."),
    Step("outgoing", 3, "send", "fund_transfer", "receiving", "contact_letter",
         "Right after the form, only when its balance_disposition is transferred: amount = "
         "amount_transferred, information_form_id = the form's message_id."),
    Step("outgoing", 4, "receive", "transfer_completed", "receiving", "information_form",
         "Compared with what was certified: equal ends the case completed, else a discrepancy."),
    Step("outgoing", 4, "receive", "rejection", "receiving", "information_form",
         "The receiving agency refused the form or the money: a discrepancy for operators."),
    Step("outgoing", 4, "receive", "rejection", "receiving", "fund_transfer",
         "The money received differs from the form (amount_mismatch), the funds having come last."),
    Step("outgoing", 5, "send", "information_form", "reconciler", "contact_letter",
         "A copy of the form (section 5)."),
    Step("outgoing", 5, "send", "rejection", "reconciler", "contact_letter",
         "A copy of a rejection it sent (section 5)."),
    Step("outgoing", 6, "receive", "statement_request", "reconciler", None,
         "After the case ends (or as a probe): obliges the next step."),
    Step("outgoing", 7, "send", "ledger_statement", "reconciler", "statement_request",
         "What its books certified, debited, paid out or retained for the case (section 5)."),
    Step("outgoing", 8, "receive", "reconciliation_result", "reconciler", "ledger_statement",
         "Whether both books agree; informative."),
    Step("outgoing", 9, "send", "reminder", "receiving", "information_form",
         "The completion is overdue."),
    Step("outgoing", 9, "receive", "reminder", "receiving", "contact_letter",
         "The receiving agency waits for the form or the funds; informative."),
    Step("outgoing", 10, "send", "receipt", "receiving", "contact_letter",
         "For every document of the case received from the receiving agency and committed, "
         "once (section 9).", also=("transfer_completed", "rejection", "reminder")),
    Step("outgoing", 10, "receive", "receipt", "receiving", "information_form",
         "The receiving agency's receipt for a document sent to it: kept in the case as "
         "evidence of delivery (section 9).", also=("fund_transfer", "rejection", "reminder")),
    # -- the reconciliation agent (000000) -------------------------------------------------------
    Step("reconciler", 1, "receive", "information_form", "outgoing", "contact_letter",
         "The outgoing agency's copy of its form: names the outgoing agency."),
    Step("reconciler", 1, "receive", "transfer_completed", "receiving", "information_form",
         "The receiving agency's copy: the case's terminal notice."),
    Step("reconciler", 1, "receive", "rejection", "both", "contact_letter",
         "Either agency's copy of the rejection that ended the case (its causation is the "
         "original's): the terminal notice.", also=("information_form", "fund_transfer")),
    Step("reconciler", 2, "send", "statement_request", "both", None,
         "On the terminal notice, to each agency of the case (and as a probe when money has been "
         "in flight past the regime's limit). Obliges a ledger_statement."),
    Step("reconciler", 3, "receive", "ledger_statement", "both", "statement_request",
         "Each agency's answer from its own books."),
    Step("reconciler", 4, "send", "reconciliation_result", "both", "ledger_statement",
         "Both final statements in: matched, or mismatched with every differing field. The "
         "causation is the recipient's own statement."),
)


def string_limits() -> dict[str, tuple[int, int | None]]:
    """Every string member of every document with its (minLength, maxLength) from the schemas."""
    limits: dict[str, tuple[int, int | None]] = {}

    def walk(schema: Any, defs: dict[str, Any], path: str) -> None:
        if not isinstance(schema, dict):
            return
        if "$ref" in schema:
            walk(defs[schema["$ref"].rsplit("/", 1)[-1]], defs, path)
            return
        for option in schema.get("anyOf", []):
            walk(option, defs, path)
        if schema.get("type") == "string" and ("maxLength" in schema or "pattern" in schema):
            limits.setdefault(path, (schema.get("minLength", 0), schema.get("maxLength")))
        for key, value in schema.get("properties", {}).items():
            walk(value, defs, f"{path}.{key}" if path else key)
        if isinstance(schema.get("items"), dict):
            walk(schema["items"], defs, f"{path}[]")

    for message_type, models in MODELS.items():
        for version in range(1, len(models) + 1):
            schema = model_for(message_type, version).model_json_schema()
            walk(schema, schema.get("$defs", {}), f"{message_type}.v{version}")
    return {k: v for k, v in sorted(limits.items()) if v[1] is not None}


def _steps_table(role: str) -> str:
    rows = ["| # | | message | with | causation_id = message_id of | when |", "|---|---|---|---|---|---|"]
    for step in sorted((s for s in STEPS if s.role == role), key=lambda s: s.order):
        arrow = "sends" if step.action == "send" else "accepts"
        peer = "both agencies" if step.peer == "both" else f"the {step.peer} agency"
        if step.peer == "reconciler":
            peer = f"the reconciler ({names.RECONCILER_CODE})"
        causes = [f"`{c}`" if c else "null" for c in step.causations]
        cause = " or ".join(causes)
        reasons = (
            " Reasons: " + ", ".join(f"`{r.value}`" for r in step.reasons) + "." if step.reasons else ""
        )
        when = step.when.replace("|", "\\|")
        rows.append(
            f"| {step.order} | {arrow} | `{step.message_type}` | {peer} | {cause} | {when}{reasons} |"
        )
    return "\n".join(rows)


def _limits_table() -> str:
    rows = ["| member | length (characters) |", "|---|---|"]
    for path, (low, high) in string_limits().items():
        rows.append(f"| `{path}` | {low}–{high} |")
    return "\n".join(rows)


def _versions_table() -> str:
    rows = ["| type | versions | newest |", "|---|---|---|"]
    for message_type, models in MODELS.items():
        versions = ", ".join(str(v) for v in range(1, len(models) + 1))
        rows.append(f"| `{message_type}` | {versions} | {len(models)} |")
    return "\n".join(rows)


def _properties_table() -> str:
    rows = ["| AMQP | must equal |", "|---|---|"]
    rows += [f"| `{prop}` | envelope `{field}` |" for prop, field in PROPERTY_RULES]
    return "\n".join(rows)


def _reasons() -> str:
    return ", ".join(f"`{r.value}`" for r in RejectionReason)


def render_protocol() -> str:
    """The text of ``docs/protocol.md``."""
    from schemas.protocol_text import TEMPLATE

    return TEMPLATE.format(
        receiving=_steps_table("receiving"),
        outgoing=_steps_table("outgoing"),
        reconciler=_steps_table("reconciler"),
        copies=", ".join(f"`{t}`" for t in RECONCILER_COPIES),
        receipted=", ".join(f"`{t}`" for t in RECEIPTED),
        properties=_properties_table(),
        versions=_versions_table(),
        limits=_limits_table(),
        reasons=_reasons(),
        body_limit=BODY_LIMIT_BYTES,
        max_depth=MAX_JSON_DEPTH,
        max_fen=f"{MAX_FEN:,}".replace(",", " "),
        max_months=MAX_MONTHS,
        reconciler_code=names.RECONCILER_CODE,
        exchange=names.EXCHANGE,
        user=names.agency_user("CODE"),
        prefixed_user=names.agency_user("CODE", "PREFIX"),
        inbox=names.inbox_queue("CODE"),
        dlq=names.dlq_queue("CODE"),
        routing_key=names.routing_key("RECIPIENT", "TYPE"),
        binding=names.inbox_binding("CODE"),
        dlx=names.DLX,
        retry_exchange=names.RETRY_EXCHANGE,
        unroutable=names.UNROUTABLE_EXCHANGE,
        example_types=json.dumps(list(MODELS)),
    )


def write_protocol(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_protocol(), encoding="utf-8")
    return path
