"""The transfer case as one agency sees it: states, events and `decide`, with no I/O at all.

``decide(case, event, ctx) -> Decision``: given the case as stored (or ``None``), one event and
the plain data the service layer fetched beforehand (`Context`), it returns the new case (or
``None``: nothing changes), the messages to send, the ledger commands to run, a transition record
and notes worth logging. It never raises for a bad event: duplicates and stale events change
nothing, events that make no sense are answered with a note, and the rules' refusals become
rejections.

Roles and states
================

Every case has one role. The **receiving** agency (the new place) opens it on an application;
the **outgoing** agency (the old place) opens it on the contact letter. Both ends use the same
case id (the envelope's ``case_id``). Due dates use the `agents.domain.deadlines` step named, counted in
the agency's working days under its `Regime` (kept by the case), from the day given.

| role | state               | meaning                                  | turn | due: step, from    |
|------|---------------------|------------------------------------------|------|--------------------|
| recv | awaiting_form       | letter sent; form (+ balance) owed to us | them | L2F from opened_on |
| recv | awaiting_funds      | form says transferred; the money is owed | them | as awaiting_form   |
| recv | crediting           | form and money agree; Credit pending     | ours | F2C from form day  |
| out  | awaiting_approval   | payout above limit: operator to approve  | ours | L2F from opened_on |
| out  | releasing           | letter accepted; ledger commands pending | ours | L2F from opened_on |
| out  | awaiting_completion | form (+ funds) sent; completion owed     | them | F2C from day sent  |
| both | completed           | done                                     |      |                    |
| both | rejected            | refused before any books changed         |      |                    |
| both | discrepancy         | stopped after books changed: operator    |      |                    |
| recv | cancelled           | withdrawn before the outgoing released   |      |                    |

L2F is ``Step.LETTER_TO_FORM_AND_FUNDS``, F2C ``Step.FORM_TO_COMPLETION``. The receiving agency
opens the case on the day it accepts the application and sends the letter at once, so "from
acceptance" (2021) and "from receiving the letter" (2016) fall on the same day; the outgoing
agency counts from the letter's arrival, the one date it knows. Every open case also shows
``flow_due_date`` (WHOLE_FLOW from opened_on) for status output; it is never reminded.

Transitions
===========

Receiving:

| from                     | event                           | to             | sends / commands           |
|--------------------------|---------------------------------|----------------|----------------------------|
| (none)                   | Application, checks pass        | awaiting_form  | contact letter             |
| (none)                   | Application, refused            | rejected       | nothing (local refusal)    |
| awaiting_form            | Funds                           | awaiting_form  | nothing: funds held        |
| awaiting_form            | Form, refused                   | discrepancy    | rejection invalid_document |
| awaiting_form            | Form: transferred, no funds yet | awaiting_funds |                            |
| awaiting_form/funds      | form, funds agree (or none due) | crediting      | Credit                     |
| awaiting_form/funds      | funds != the form's amount      | discrepancy    | rejection amount_mismatch  |
| awaiting_form            | Rejection                       | rejected       |                            |
| awaiting_funds/crediting | Rejection                       | discrepancy    |                            |
| crediting                | LedgerApplied                   | completed      | transfer completed         |
| crediting                | LedgerRefused                   | discrepancy    | rejection other            |
| any open state           | Tick after due date             | (same)         | reminder                   |
| crediting                | Tick                            | (same)         | Credit again               |

Outgoing:

| from                | event                           | to                  | sends / commands            |
|---------------------|---------------------------------|---------------------|-----------------------------|
| (none)              | Letter, checks pass             | releasing           | TerminateAndDebit [+PayOut] |
| (none)              | Letter, payout above the limit  | awaiting_approval   | nothing (commands held)     |
| awaiting_approval   | PayoutApproved                  | releasing           | the held commands           |
| awaiting_approval   | Rejection                       | rejected            |                             |
| (none)              | Letter, refused                 | rejected            | rejection (the reason)      |
| releasing           | LedgerApplied                   | awaiting_completion | form [+ fund transfer]      |
| releasing           | LedgerRefused, none applied     | rejected            | rejection                   |
| releasing           | LedgerRefused, some applied,    | discrepancy         | rejection other             |
|                     | or no valid form can be written |                     |                             |
| awaiting_completion | Completion equal to the form    | completed           |                             |
| awaiting_completion | Completion differing            | discrepancy         |                             |
| releasing           | Rejection                       | discrepancy         |                             |
| awaiting_completion | Rejection                       | discrepancy         |                             |
| awaiting_completion | Tick after due date             | (same)              | reminder                    |
| releasing           | Tick                            | (same)              | ledger commands again       |

Money goes only where the agency directory says: the fund transfer pays
``Context.counterpart_account`` (the receiving agency's account in the directory), never the account
the contact letter names; a letter whose account differs is noted (``case.letter_account_differs``)
and otherwise ignored. A payout to the person needs the letter's name and ID number and the payout
account's holder to match the outgoing books (`policy.check_letter`), and a payout of more than
``Agency.payout_approval_limit_fen`` waits in ``awaiting_approval`` until an operator approves it
(`PayoutApproved`); nothing changes in the books before that.

A counterpart's receipt (`ReceiptReceived`) for a document the case sent is kept in
``Case.receipts`` with a history entry, in any state, terminal ones included (the receipt for a
completion notice arrives after the case completed); the state does not change.

Anything else (a message seen before, a second letter or form for the case, an event for a
terminal case, an event for the other role) changes nothing and yields a note. Money that arrives
for a case that no longer expects it is recorded in the case (``funds``) with a note
``case.unexpected_funds`` for the operator, and nothing else happens.

Contract with the service layer
===============================

* Messages: `OutboundMessage` carries the recipient, the newest-version document, the version
  to send it as (chosen when the case was opened and kept: ``Case.versions``), a deterministic
  ``message_id`` (the same decision always yields the same ids, so a recomputed decision is
  deduplicated downstream) and the ``causation_id``. Wrap it with
  ``schemas.envelope_for(document, sender=own, recipient=..., case_id=case.case_id,
  causation_id=..., message_id=..., version=...)``.
* Ledger commands: a decision with commands never carries messages. Commit the case (state
  ``releasing``/``crediting``, commands kept in ``Case.pending_commands``); then run each command
  in order against the ledger, which is idempotent per ``(case_id, command.operation)``; feed the
  results back as `LedgerApplied` (or, on a `DomainRuleViolation`, `LedgerRefused` with what was
  already applied) and commit that decision. After a crash, a `Tick` re-issues the pending
  commands; replaying them is harmless.
* Version choice: `Context.counterpart_versions` is the directory's ``supported_versions`` for the
  counterpart (a type missing from it means version 1 only; ``None`` means every version we know).

Modules
=======

The case is one package, split by concern; import from ``agents.domain.case`` (or ``decide``,
``Decision``, ``Case`` and ``Context`` from ``agents.domain``), not from the modules:

| module      | holds                                                                               |
|-------------|-------------------------------------------------------------------------------------|
| `model`     | `Role`, `State`, `Case` and its frozen parts; the store's view (`case_columns`)     |
| `commands`  | the ledger commands (`TerminateAndDebit`, `PayOut`, `Credit`)                       |
| `events`    | the events and `event_for_message`                                                  |
| `decision`  | `Agency`, `Context`, `OutboundMessage`, `TransitionRecord`, `Note`, `Decision`, and |
|             | the small pieces every handler shares                                               |
| `receiving` | the application, the form, the funds, crediting, a refused ledger command, a        |
|             | rejection at the receiving end                                                      |
| `outgoing`  | the letter, releasing and writing the form, the completion, a rejection at the      |
|             | outgoing end                                                                        |
| `timing`    | the deadline fields of each state and the `Tick`                                    |
| `operator`  | what an operator does to a case: cancel (withdraw), resolve a discrepancy           |
| `receipts`  | the counterpart's receipt: which document it acknowledges, kept in ``receipts``     |
| `dispatch`  | `decide`, which hands each event to its handler                                     |
"""

from agents.domain.case.commands import Credit, LedgerCommand, PayOut, TerminateAndDebit
from agents.domain.case.decision import Agency, Context, Decision, Note, OutboundMessage, TransitionRecord
from agents.domain.case.dispatch import decide
from agents.domain.case.events import (
    ApplicationSubmitted,
    CancelRequested,
    CompletionReceived,
    DeliveryHeld,
    Event,
    FormReceived,
    FundsReceived,
    LedgerApplied,
    LedgerRefused,
    LetterReceived,
    MessageEvent,
    PayoutApproved,
    ReceiptReceived,
    RejectionReceived,
    ReminderReceived,
    ResolveRequested,
    Tick,
    event_for_message,
)
from agents.domain.case.model import (
    TERMINAL_STATES,
    Booked,
    Case,
    CaseColumns,
    Discrepancy,
    Receipt,
    ReceivedFunds,
    Resolution,
    Role,
    State,
    case_columns,
    case_from_data,
    case_to_data,
    is_terminal,
    person_key,
    whose_turn,
)

__all__ = [
    "TERMINAL_STATES",
    "Agency",
    "ApplicationSubmitted",
    "Booked",
    "CancelRequested",
    "Case",
    "CaseColumns",
    "CompletionReceived",
    "Context",
    "Credit",
    "Decision",
    "DeliveryHeld",
    "Discrepancy",
    "Event",
    "FormReceived",
    "FundsReceived",
    "LedgerApplied",
    "LedgerCommand",
    "LedgerRefused",
    "LetterReceived",
    "MessageEvent",
    "Note",
    "OutboundMessage",
    "PayOut",
    "PayoutApproved",
    "Receipt",
    "ReceiptReceived",
    "ReceivedFunds",
    "RejectionReceived",
    "ReminderReceived",
    "Resolution",
    "ResolveRequested",
    "Role",
    "State",
    "TerminateAndDebit",
    "Tick",
    "TransitionRecord",
    "case_columns",
    "case_from_data",
    "case_to_data",
    "decide",
    "event_for_message",
    "is_terminal",
    "person_key",
    "whose_turn",
]
