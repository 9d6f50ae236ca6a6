"""The conformance kit: plays an agency's counterpart and the reconciler against its system.

`run_conformance` speaks, over a real broker, as a receiving agency (the *kit's agency*, one the
directory lists with its own broker user and key) and as the reconciler (000000), to the agency
under test in its **outgoing** role and in its reconciliation duties, and checks every answer
against ``docs/protocol.md``: the documents, their causation, the copies to the reconciler, the
ledger statements, the receipts (one per document committed, causation the document), the
rejection of a letter for someone its books do not hold, a republished duplicate that must have
no second effect (no second answer, no second receipt), and a forged letter that must get no
answer. The kit acknowledges what it receives with receipts, as a counterpart does.

What it cannot see: the agency's dead-letter queue (a forged letter is checked by the *absence* of
an answer), and its **receiving** role, which starts from an application at its own counter (not
over the wire). The agency's books must hold the ``persons`` given (insured there, participation
stopped, no arrears, not retired) and must not hold ``unknown_id_number``.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aio_pika.abc import AbstractQueue

from broker.connection import BrokerConnection, connect
from broker.delivery import HEADER_REPUBLISHED
from broker.directory import AgencyDirectory
from broker.names import EXCHANGE, inbox_queue, routing_key
from broker.publisher import Publisher, envelope_message
from broker.signing import Ed25519PrivateKey, generate_private_key, sign_and_encode
from schemas.common import AgencyDetails, BankAccount, InsuranceType, Person, gender_of_citizen_id
from schemas.contact import ContactLetterV2
from schemas.envelope import Envelope
from schemas.errors import ContractError
from schemas.funds import FundTransferV1, RemittanceMark
from schemas.information import BalanceDisposition, ContributionPeriod, InformationFormV2
from schemas.notices import ReceiptV1, RejectionReason, RejectionV1, TransferCompletedV1
from schemas.reconciliation import LedgerStatementV1, Role, StatementRequestV1
from schemas.registry import Message, envelope_for, negotiate_version, parse

__all__ = ["Check", "ConformanceSettings", "Party", "run_conformance"]


@dataclass(frozen=True)
class Check:
    step: str
    ok: bool
    expected: str
    got: str


@dataclass(frozen=True)
class Party:
    """One identity the kit speaks as: code, broker URL (its own user), signing key."""

    code: str
    amqp_url: str
    private_key: Ed25519PrivateKey


@dataclass(frozen=True)
class ConformanceSettings:
    agency: str
    """The agency under test."""
    kit: Party
    """The receiving agency the kit plays (listed in the directory with this key)."""
    reconciler: Party
    directory: AgencyDirectory
    persons: tuple[Person, ...]
    """At least one person the agency's books hold, ready to transfer out."""
    unknown_id_number: str
    timeout_s: float = 60.0
    quiet_s: float = 3.0
    """How long "no answer" is waited for."""
    roles: tuple[str, ...] = ("outgoing",)
    """The agency's roles to test. ``receiving``: the kit waits for a contact letter from the
    agency (someone applies there for a person moving from the kit's region) and plays the
    outgoing agency for it."""
    letter_timeout_s: float = 600.0
    """How long the receiving scenario waits for that letter."""


@dataclass
class _Inbox:
    connection: BrokerConnection
    queue: AbstractQueue
    kept: list[Message] = field(default_factory=list)

    async def take(
        self, match: Callable[[Message], bool], within_s: float
    ) -> Message | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while True:
            for message in self.kept:
                if match(message):
                    self.kept.remove(message)
                    return message
            incoming = await self.queue.get(no_ack=False, fail=False)
            if incoming is not None:
                with contextlib.suppress(ContractError):  # not for the kit to judge here
                    self.kept.append(parse(incoming.body))
                await incoming.ack()
                continue
            if loop.time() > deadline:
                return None
            await asyncio.sleep(0.05)


class _Kit:
    def __init__(self, settings: ConformanceSettings) -> None:
        self.s = settings
        self.checks: list[Check] = []
        self.publishers: dict[str, Publisher] = {}
        self.inboxes: dict[str, _Inbox] = {}

    async def open(self) -> None:
        for party in (self.s.kit, self.s.reconciler):
            connection = await connect(party.amqp_url, name=f"jiexu-conformance-{party.code}")
            self.publishers[party.code] = await Publisher(
                connection, agency=party.code, private_key=party.private_key
            ).start()
            channel = await connection.channel(confirms=False)
            queue = await channel.get_queue(inbox_queue(party.code), ensure=False)
            self.inboxes[party.code] = _Inbox(connection, queue)

    async def close(self) -> None:
        for inbox in self.inboxes.values():
            await inbox.connection.close()

    def check(self, step: str, ok: bool, expected: str, got: object) -> bool:
        self.checks.append(Check(step, ok, expected, str(got)))
        return ok

    async def send(self, party: Party, document: Any, *, case_id: uuid.UUID,
                   causation_id: uuid.UUID | None = None, recipient: str | None = None) -> Envelope:
        target = recipient or self.s.agency
        supported = self.s.directory.supported_versions(target, document.MESSAGE_TYPE) or (1,)
        version = negotiate_version(document.MESSAGE_TYPE, supported)
        envelope = envelope_for(document, sender=party.code, recipient=target, case_id=case_id,
                                causation_id=causation_id, version=version)
        return await self.publishers[party.code].publish(envelope)

    async def expect(self, party: Party, message_type: str, case_id: uuid.UUID,
                     within_s: float | None = None) -> Message | None:
        return await self.inboxes[party.code].take(
            lambda m: m.envelope.type == message_type and m.envelope.case_id == case_id
            and m.envelope.sender == self.s.agency,
            self.s.timeout_s if within_s is None else within_s,
        )

    async def expect_receipt(self, party: Party, document: Envelope, what: str) -> None:
        """The agency's receipt for `document` (docs/protocol.md section 9)."""
        got = await self.inboxes[party.code].take(
            lambda m: m.envelope.type == "receipt" and m.envelope.sender == self.s.agency
            and m.envelope.causation_id == document.message_id,
            self.s.timeout_s,
        )
        acknowledged = got.document if got is not None else None
        self.check(f"receipt for the {what}",
                   isinstance(acknowledged, ReceiptV1)
                   and acknowledged.acknowledged_message_id == document.message_id
                   and got is not None and got.envelope.case_id == document.case_id,
                   f"receipt: causation and acknowledged_message_id = {document.message_id}",
                   got and (got.envelope.causation_id, acknowledged))

    async def acknowledge(self, party: Party, message: Message) -> None:
        """The kit's receipt for a document the agency sent, as a counterpart sends one."""
        await self.send(party, ReceiptV1(acknowledged_message_id=message.envelope.message_id),
                        case_id=message.envelope.case_id, causation_id=message.envelope.message_id)

    def letter(self, person: Person) -> ContactLetterV2:
        entry = self.s.directory.get(self.s.kit.code)
        return ContactLetterV2(
            letter_number=f"CONF-{uuid.uuid4().hex[:8]}", person=person,
            insurance_type=InsuranceType.EMPLOYEE, from_region=self.s.agency, to_region=self.s.kit.code,
            receiving_agency=AgencyDetails(
                name=entry.name, address=entry.address or "(not stated)",
                phone=entry.phone or "00000000",
                bank_account=BankAccount(**entry.bank_account.model_dump()),
            ),
            payout_account=None, payout_reason=None,
        )

    # -- the scenarios ------------------------------------------------------------------------
    async def outgoing_role(self) -> None:
        kit, rec = self.s.kit, self.s.reconciler
        person = self.s.persons[0]
        case_id = uuid.uuid4()
        letter = await self.send(kit, self.letter(person), case_id=case_id)
        await self.expect_receipt(kit, letter, "contact letter")
        form_msg = await self.expect(kit, "information_form", case_id)
        if not self.check("letter answered with an information_form", form_msg is not None,
                          "information_form, causation = the letter", form_msg and form_msg.envelope.type):
            return
        assert form_msg is not None
        await self.acknowledge(kit, form_msg)
        form = form_msg.document
        assert isinstance(form, InformationFormV2)
        self.check("form: causation_id is the letter", form_msg.envelope.causation_id == letter.message_id,
                   str(letter.message_id), form_msg.envelope.causation_id)
        self.check("form: the person of the letter", form.person.id_number == person.id_number,
                   "the letter's id_number", "same" if form.person == person else "another person")
        wanted = negotiate_version(
            "information_form", self.s.directory.supported_versions(kit.code, "information_form") or (1,)
        )
        self.check("form: the newest version both declare", form_msg.envelope.version == wanted,
                   f"v{wanted}", f"v{form_msg.envelope.version}")
        if form.balance_disposition is BalanceDisposition.TRANSFERRED:
            funds = await self.expect(kit, "fund_transfer", case_id)
            ok = funds is not None and funds.envelope.causation_id == letter.message_id
            self.check("fund_transfer after the form, causation = the letter", ok,
                       f"fund_transfer of {form.amount_transferred} fen", funds and funds.document)
            if funds is not None:
                await self.acknowledge(kit, funds)
                transfer: Any = funds.document
                self.check("fund_transfer: amount and form id",
                           transfer.amount == form.amount_transferred
                           and transfer.information_form_id == form_msg.envelope.message_id,
                           f"{form.amount_transferred} fen, form {form_msg.envelope.message_id}",
                           f"{transfer.amount} fen, form {transfer.information_form_id}")
        copy = await self.expect(rec, "information_form", case_id)
        self.check("copy of the form to the reconciler",
                   copy is not None and copy.envelope.causation_id == letter.message_id
                   and copy.document == form,
                   "information_form to 000000, same document and causation",
                   copy and (copy.envelope.causation_id, copy.document == form))

        # A republished duplicate of the letter has no second effect.
        envelope, body = sign_and_encode(letter.model_copy(update={"signature": None}), kit.private_key)
        publisher = self.publishers[kit.code]
        await publisher.publish_message(
            EXCHANGE, routing_key(self.s.agency, "contact_letter"),
            envelope_message(envelope, body, publisher.user_id, {HEADER_REPUBLISHED: True}),
        )
        again = await self.expect(kit, "information_form", case_id, self.s.quiet_s)
        self.check("a republished letter has no second effect", again is None,
                   "no second information_form", again and again.envelope.message_id)
        receipt_again = await self.inboxes[kit.code].take(
            lambda m: m.envelope.type == "receipt" and m.envelope.causation_id == letter.message_id,
            0.0,
        )
        self.check("a republished letter is not acknowledged twice", receipt_again is None,
                   "no second receipt", receipt_again and receipt_again.envelope.message_id)

        done = TransferCompletedV1(months_credited=form.months_paid,
                                   deemed_months_credited=form.deemed_months,
                                   amount_credited=form.amount_transferred)
        completion = await self.send(kit, done, case_id=case_id,
                                     causation_id=form_msg.envelope.message_id)
        await self.expect_receipt(kit, completion, "completion notice")
        await self.statement(case_id, Role.OUTGOING, form)

    async def statement(self, case_id: uuid.UUID, role: Role | None, form: InformationFormV2 | None) -> None:
        rec = self.s.reconciler
        request = await self.send(rec, StatementRequestV1(case_id=case_id), case_id=case_id)
        answer = await self.expect(rec, "ledger_statement", case_id)
        step = "statement request answered" + (" (unknown case)" if role is None else "")
        answered = answer is not None and answer.envelope.causation_id == request.message_id
        if not self.check(step, answered, "ledger_statement, causation = the request",
                          answer and answer.envelope.causation_id):
            return
        assert answer is not None
        statement = answer.document
        assert isinstance(statement, LedgerStatementV1)
        if role is None or form is None:
            self.check("statement of an unknown case: has_record false, every number 0",
                       not statement.has_record and statement.amount == statement.months == 0,
                       "has_record false", statement)
            return
        self.check("statement: role, counterpart and books",
                   statement.role is role and statement.counterpart == self.s.kit.code
                   and statement.has_record and statement.months == form.months_paid
                   and statement.amount == form.amount_transferred,
                   f"{role.value}, {self.s.kit.code}, {form.months_paid} months, "
                   f"{form.amount_transferred} fen", statement)

    async def rejection(self) -> None:
        kit, rec = self.s.kit, self.s.reconciler
        unknown = self.s.unknown_id_number
        stranger = Person(
            name=self.s.persons[0].name, gender=gender_of_citizen_id(unknown), id_number=unknown
        )
        case_id = uuid.uuid4()
        letter = await self.send(kit, self.letter(stranger), case_id=case_id)
        await self.expect_receipt(kit, letter, "letter for an unknown person")
        answer = await self.expect(kit, "rejection", case_id)
        if answer is not None:
            await self.acknowledge(kit, answer)
        document = answer.document if answer is not None else None
        self.check("a letter for an unknown person is rejected (unknown_person)",
                   isinstance(document, RejectionV1)
                   and document.reason_code is RejectionReason.UNKNOWN_PERSON
                   and answer is not None and answer.envelope.causation_id == letter.message_id,
                   "rejection unknown_person, causation = the letter", document)
        copy = await self.expect(rec, "rejection", case_id)
        self.check("copy of the rejection to the reconciler", copy is not None,
                   "rejection to 000000", copy and copy.envelope.type)

    async def forged(self) -> None:
        person = self.s.persons[-1]
        case_id = uuid.uuid4()
        kit = self.s.kit
        envelope = envelope_for(self.letter(person), sender=kit.code, recipient=self.s.agency,
                                case_id=case_id)
        forged, body = sign_and_encode(envelope, generate_private_key())
        publisher = self.publishers[kit.code]
        await publisher.publish_message(
            EXCHANGE, routing_key(self.s.agency, "contact_letter"),
            envelope_message(forged, body, publisher.user_id),
        )
        answer = await self.inboxes[kit.code].take(
            lambda m: m.envelope.case_id == case_id, self.s.quiet_s
        )
        self.check("a letter with a forged signature gets no answer", answer is None,
                   "nothing (dead-lettered by the agency)", answer and answer.envelope.type)


    async def receiving_role(self) -> None:
        kit = self.s.kit
        letter = await self.inboxes[kit.code].take(
            lambda m: m.envelope.type == "contact_letter" and m.envelope.sender == self.s.agency,
            self.s.letter_timeout_s,
        )
        if not self.check("receiving: a contact letter from the agency", letter is not None,
                          f"contact_letter to {kit.code} (apply at the agency for a person "
                          f"moving from {kit.code})", None):
            return
        assert letter is not None
        await self.acknowledge(kit, letter)
        case_id, document = letter.envelope.case_id, letter.document
        assert isinstance(document, ContactLetterV2)
        self.check("letter: causation null, regions, the newest version both declare",
                   letter.envelope.causation_id is None and document.from_region == kit.code
                   and document.to_region == self.s.agency
                   and letter.envelope.version == self._version(kit.code, "contact_letter"),
                   f"null, {kit.code} -> {self.s.agency}, v{self._version(kit.code, 'contact_letter')}",
                   (letter.envelope.causation_id, document.from_region, document.to_region,
                    letter.envelope.version))
        balance = 123_456
        form = InformationFormV2(
            person=document.person, insurance_type=InsuranceType.EMPLOYEE,
            participation_start="2023-01", participation_end="2024-12", months_paid=24,
            deemed_months=0, account_balance=balance, amount_transferred=balance,
            balance_disposition=BalanceDisposition.TRANSFERRED,
            contribution_periods=(ContributionPeriod(
                from_month="2023-01", to_month="2024-12", region=kit.code,
                insurance_type=InsuranceType.EMPLOYEE, months=24),),
            seal_reference="CONFORMANCE-TEST-SEAL",
        )
        sent = await self.send(kit, form, case_id=case_id, causation_id=letter.envelope.message_id)
        entry = self.s.directory.get(kit.code)
        money = await self.send(kit, FundTransferV1(
            amount=balance, payer_account=BankAccount(**entry.bank_account.model_dump()),
            payee_account=document.receiving_agency.bank_account,
            information_form_id=sent.message_id,
            remittance_mark=RemittanceMark(name=document.person.name,
                                           id_number=document.person.id_number),
        ), case_id=case_id, causation_id=letter.envelope.message_id)
        await self.expect_receipt(kit, sent, "information form (receiving)")
        await self.expect_receipt(kit, money, "fund transfer (receiving)")
        done = await self.expect(kit, "transfer_completed", case_id)
        if done is not None:
            await self.acknowledge(kit, done)
        credited = done.document if done is not None else None
        self.check("receiving: completion credits the form, causation = the form",
                   isinstance(credited, TransferCompletedV1) and done is not None
                   and done.envelope.causation_id == sent.message_id
                   and (credited.months_credited, credited.amount_credited) == (24, balance),
                   f"transfer_completed 24 months, {balance} fen", credited)
        copy = await self.expect(self.s.reconciler, "transfer_completed", case_id)
        self.check("receiving: copy of the completion to the reconciler",
                   copy is not None and copy.envelope.causation_id == sent.message_id,
                   "transfer_completed to 000000, causation = the form", copy and copy.document)
        await self.statement(case_id, Role.RECEIVING, form)

    def _version(self, recipient: str, message_type: str) -> int:
        return negotiate_version(
            message_type, self.s.directory.supported_versions(recipient, message_type) or (1,)
        )


async def run_conformance(settings: ConformanceSettings) -> list[Check]:
    """Every scenario, in order; a check per step, passed or not."""
    kit = _Kit(settings)
    await kit.open()
    try:
        if "outgoing" in settings.roles:
            await kit.forged()
            await kit.outgoing_role()
            await kit.rejection()
        if "receiving" in settings.roles:
            await kit.receiving_role()
        await kit.statement(uuid.uuid4(), None, None)
    finally:
        await kit.close()
    return kit.checks
