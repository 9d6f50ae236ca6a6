"""What `jiexu case show`, `apply`, `cancel` and `resolve` print of a case: a JSON-safe summary
(personal data masked) and its lines of text."""

from __future__ import annotations

from typing import Any

__all__ = ["case_summary", "one_line", "show_lines"]


def one_line(summary: dict[str, Any]) -> str:
    return (
        f"case {summary['case_id']}: {summary['state']}"
        + (f" (due {summary['due_date']}, {summary['whose_turn']}'s turn)" if summary["due_date"] else "")
        + (f" — {summary['rejection_reason']}" if summary["rejection_reason"] else "")
        + (f" — undeliverable: {summary['undeliverable']}" if summary.get("undeliverable") else "")
    )


def case_summary(case: Any, history: list[Any] | None = None) -> dict[str, Any]:
    from broker.logging import mask_name, mask_value

    summary: dict[str, Any] = {
        "case_id": str(case.case_id),
        "role": case.role.value,
        "state": case.state.value,
        "person": {
            "name": mask_name(case.person.name),
            "id_number": mask_value(case.person.id_number),
        },
        "counterpart": case.counterpart_code,
        "opened_on": case.opened_on.isoformat(),
        "whose_turn": case.whose_turn,
        "waiting_since": case.waiting_since.isoformat() if case.waiting_since else None,
        "due_date": case.due_date.isoformat() if case.due_date else None,
        "flow_due_date": case.flow_due_date.isoformat() if case.flow_due_date else None,
        "overdue_step": case.overdue_step.value if case.overdue_step else None,
        "reminders_sent": case.reminders_sent,
        "rejection_reason": case.rejection_reason.value if case.rejection_reason else None,
        "discrepancy": case.discrepancy.model_dump(mode="json") if case.discrepancy else None,
        "booked": case.booked.model_dump(mode="json") if case.booked else None,
        "note": case.note,
        "resolution": case.resolution.model_dump(mode="json") if case.resolution else None,
        "undeliverable": getattr(case, "undeliverable", None),
        "receipts": [
            {
                "document": r.document,
                "message_id": str(r.acknowledged_message_id),
                "received_on": r.received_on.isoformat(),
            }
            for r in getattr(case, "receipts", ())
        ],
    }
    continuity = getattr(case, "continuity", None)
    summary["continuity"] = continuity.model_dump(mode="json") if continuity is not None else None
    certificate = getattr(case, "certificate", None)
    summary["certificate"] = (
        {
            "number": certificate.certificate_number,
            "check_code": certificate.check_code,
            "issued_on": certificate.issued_on.isoformat(),
            "register_by": certificate.register_by.isoformat(),
        }
        if certificate is not None
        else None
    )
    if history is not None:
        summary["history"] = [
            {
                "at": t.at.isoformat(),
                "from": t.from_state,
                "to": t.to_state,
                "event": t.event,
            }
            for t in history
        ]
    return summary


def _continuity_line(continuity: dict[str, Any]) -> str:
    """One line for `case show`: the outcome, the gap and its ends, back-payment, waiting, benefits."""
    text = (
        f"{continuity['outcome']}: gap {continuity['gap_months']} months "
        f"(ended {continuity['participation_end']}, enrolled {continuity['enrolment_start']})"
    )
    if continuity["back_payment_months"]:
        text += f", back-payment {', '.join(continuity['back_payment_months'])}"
    if continuity["waiting_months"]:
        text += f", waiting {continuity['waiting_months']} months"
    return text + f", benefits from {continuity['benefits_from']}"


def show_lines(summary: dict[str, Any]) -> list[str]:
    """`case show`'s text for one case."""
    out: list[str] = []
    out.append(
        f"case {summary['case_id']} ({summary['role']}, counterpart {summary['counterpart']})\n"
        f"  person   {summary['person']['name']} {summary['person']['id_number']}\n"
        f"  state    {summary['state']}"
        + (f"; {summary['whose_turn']}'s turn, due {summary['due_date']}" if summary["due_date"] else "")
    )
    if summary["undeliverable"]:
        out.append(
            f"  undeliverable: the {summary['undeliverable']} waits in the outbox: the broker has no"
            f" inbox for {summary['counterpart']} (run `jiexu topology apply`)"
        )
    if summary["rejection_reason"]:
        out.append(f"  rejected {summary['rejection_reason']}")
    if summary["discrepancy"]:
        out.append(f"  discrepancy {summary['discrepancy']['kind']}: {summary['discrepancy']['text']}")
    if summary["resolution"]:
        r = summary["resolution"]
        out.append(f"  resolved {r['on']}: {r['decision']} — {r['reason']}")
    if summary["continuity"]:
        out.append(f"  continuity {_continuity_line(summary['continuity'])}")
    if summary["certificate"]:
        cert = summary["certificate"]
        out.append(
            f"  certificate {cert['number']} check code {cert['check_code']}, issued "
            f"{cert['issued_on']}, register by {cert['register_by']}"
        )
    if summary["receipts"]:
        out.append(
            "  receipts "
            + ", ".join(f"{r['document']} ({r['received_on']})" for r in summary["receipts"])
        )
    for step in summary.get("history", []):
        out.append(f"  {step['at']}  {step['from'] or '-':>20} -> {step['to']:<20} {step['event']}")
    return out
