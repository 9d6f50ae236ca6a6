"""The rules of a transfer (domain.md), as pure functions of plain values.

`agents.domain.case.decide` asks these functions what the rules say; they know nothing of cases, states
or messages. Every refusal carries a `RejectionReason` from the closed list and a text for people:
texts never contain names, ID numbers or account numbers (they travel into logs and rejections).

| rule                                               | where              | refusal                         |
|----------------------------------------------------|--------------------|---------------------------------|
| another open case for the person here              | either end         | duplicate_case                  |
| the receiving place has not enrolled the person    | receiving, applied | not_enrolled_at_receiving_place |
| a payout is needed but no bank account was given   | receiving, applied | other                           |
| letter not addressed to us / not from its sender   | outgoing, letter   | invalid_document                |
| unknown person at the outgoing place               | outgoing, letter   | unknown_person                  |
| relationship already transferred out               | outgoing, letter   | duplicate_case                  |
| participation not stopped                          | outgoing, letter   | participation_not_stopped       |
| arrears                                            | outgoing, letter   | arrears                         |
| retiree without a payout request                   | outgoing, letter   | retiree                         |
| payout: name, ID or account holder not as in books | outgoing, letter   | invalid_document                |
| a transfer, but no directory account for the payee | outgoing, letter   | other                           |
| form for another person / disposition not as asked | receiving, form    | invalid_document                |

What happens to the balance (`release_plan`, decided by the outgoing agency from its books and the
letter), first match wins:

| condition                               | disposition          | ledger commands                          |
|-----------------------------------------|----------------------|------------------------------------------|
| resident insurance (390) or balance 0   | no_account           | terminate, debit 0                       |
| both regions in Guangdong (44xxxx)      | retained_in_province | terminate, debit 0, retain=True          |
| the letter requests a payout            | paid_to_person       | terminate, debit 0; pay out the balance  |
| otherwise                               | transferred          | terminate, debit the balance; funds sent |

When the receiving agency asks for a payout (`payout_for_application`), first match wins: nothing
within Guangdong or from resident insurance (there is no balance to move); the applicant's own
request (retiree resettled, enlistment, death, emigration, ...); ``scheme_switch`` when the person
moves from employee (310) to resident (390) insurance, which has no personal account (always asked:
the receiving agency does not know the balance, the outgoing one pays out only if it is above 0);
``cannot_receive_funds`` when this agency is configured not to accept balances.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from agents.domain.books import PersonAccount
from agents.domain.workdays import WorkdayCalendar
from schemas.common import BankAccount, InsuranceType
from schemas.contact import ContactLetterV2, PayoutReason
from schemas.information import BalanceDisposition, InformationFormV2
from schemas.notices import RejectionReason

__all__ = [
    "GUANGDONG",
    "REMINDER_INTERVAL_WORKING_DAYS",
    "PayoutPlan",
    "Refusal",
    "ReleasePlan",
    "check_application",
    "check_form",
    "check_letter",
    "payout_for_application",
    "payout_matches_books",
    "release_plan",
    "reminder_due",
    "same_name",
    "within_guangdong",
    "yuan",
]

GUANGDONG = "44"
"""Province prefix of Guangdong's region codes: within the province the personal account is usable
everywhere, so no balance moves (no fund transfer, no payout) and only the months do."""

REMINDER_INTERVAL_WORKING_DAYS = 5
"""An overdue step is reminded once on the first day it is overdue, then again every this many
working days for as long as it stays overdue."""


@dataclass(frozen=True)
class Refusal:
    """The rules say no: why, for the rejection."""

    reason: RejectionReason
    text: str


@dataclass(frozen=True)
class PayoutPlan:
    """The receiving agency asks the outgoing one to pay the balance to the person's account."""

    account: BankAccount
    reason: PayoutReason


@dataclass(frozen=True)
class ReleasePlan:
    """What the outgoing agency does with the balance."""

    disposition: BalanceDisposition
    debit_fen: int
    """Sent to the receiving agency by fund transfer (``transferred`` only)."""
    retain: bool
    """The balance stays here (Guangdong within the province)."""
    payout_fen: int
    """Paid to the person's own account (``paid_to_person`` only)."""
    payout_account: BankAccount | None


def yuan(fen: int) -> str:
    """``123456`` → ``"1234.56"``: amounts in texts written for people."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}.{cents:02d}"


def within_guangdong(code_a: str, code_b: str) -> bool:
    return code_a[:2] == GUANGDONG and code_b[:2] == GUANGDONG


def check_application(
    *,
    own_code: str,
    from_region: str,
    account: PersonAccount | None,
    other_open_case: bool,
) -> Refusal | None:
    """The receiving agency's checks before it sends the contact letter."""
    if other_open_case:
        return Refusal(
            RejectionReason.DUPLICATE_CASE,
            "已有一件该参保人的转移接续业务正在办理 (a transfer for this person is already open here).",
        )
    if from_region == own_code:
        return Refusal(
            RejectionReason.INVALID_DOCUMENT,
            "转出地与转入地相同 (the application names this agency as the outgoing place).",
        )
    if account is None or not account.enrolled:
        return Refusal(
            RejectionReason.NOT_ENROLLED_AT_RECEIVING_PLACE,
            "参保人尚未在转入地参保，请先办理参保登记 (not enrolled at the receiving place).",
        )
    return None


def payout_for_application(
    *,
    own_code: str,
    from_region: str,
    insurance_type_from: InsuranceType,
    insurance_type_to: InsuranceType,
    accepts_funds: bool,
    payout_account: BankAccount | None,
    payout_reason: PayoutReason | None,
) -> PayoutPlan | Refusal | None:
    """Whether the contact letter asks for the balance to be paid to the person (see the module)."""
    if within_guangdong(own_code, from_region) or insurance_type_from is InsuranceType.RESIDENT:
        return None
    if payout_reason is not None:
        reason = payout_reason
    elif insurance_type_to is InsuranceType.RESIDENT:
        reason = PayoutReason.SCHEME_SWITCH
    elif not accepts_funds:
        reason = PayoutReason.CANNOT_RECEIVE_FUNDS
    else:
        return None
    if payout_account is None:
        return Refusal(
            RejectionReason.OTHER,
            "个人账户余额需支付给参保人本人，请提供本人银行账户 "
            f"(the balance must be paid to the person, reason {reason.value}: their bank account is "
            "needed).",
        )
    return PayoutPlan(payout_account, reason)


_DOTS = str.maketrans(dict.fromkeys("\u2022\u2027\u30fb\u2219\u22c5\uff65", "\u00b7"))


def same_name(a: str, b: str) -> bool:
    """Two spellings of one registered name: spaces and look-alike middle dots do not count."""

    def norm(name: str) -> str:
        return "".join(name.split()).translate(_DOTS)

    return norm(a) == norm(b)


def payout_matches_books(letter: ContactLetterV2, account: PersonAccount) -> bool:
    """A payout goes only to the person the books know: the letter's name and ID number are the
    books', and the payout account is held in that name."""
    payout = letter.payout_account
    return (
        payout is not None
        and letter.person.id_number == account.id_number
        and same_name(letter.person.name, account.name)
        and same_name(payout.account_name, account.name)
    )


def check_letter(
    *,
    own_code: str,
    sender: str,
    letter: ContactLetterV2,
    account: PersonAccount | None,
    other_open_case: bool,
    payee_known: bool = True,
) -> Refusal | None:
    """The outgoing agency's checks on a contact letter, against its own books.

    ``payee_known``: the agency directory lists a valid bank account for the sender (the only
    account a fund transfer may pay)."""
    if other_open_case:
        return Refusal(
            RejectionReason.DUPLICATE_CASE,
            "该参保人在转出地已有一件转移接续业务正在办理 (a transfer for this person is already open "
            "at the outgoing agency).",
        )
    if letter.from_region != own_code or letter.to_region != sender:
        return Refusal(
            RejectionReason.INVALID_DOCUMENT,
            "联系函的转出地或转入地与收发机构不符 (the letter's from_region must be the recipient "
            "and its to_region the sender).",
        )
    if account is None:
        return Refusal(
            RejectionReason.UNKNOWN_PERSON,
            "转出地无该参保人的参保记录 (no insured person with this ID number here).",
        )
    if not account.enrolled:
        # A case for this person already took the relationship away: this one is a second case.
        return Refusal(
            RejectionReason.DUPLICATE_CASE,
            "该参保人的医保关系已转出 (the relationship here has already been transferred out).",
        )
    if account.participation != "stopped":
        return Refusal(
            RejectionReason.PARTICIPATION_NOT_STOPPED,
            "参保人在转出地尚未停保，请先办理中止参保 (participation here has not been stopped).",
        )
    if account.arrears_fen > 0:
        return Refusal(
            RejectionReason.ARREARS,
            f"参保人在转出地欠费 {yuan(account.arrears_fen)} 元，补缴后再申请 "
            f"(arrears of {yuan(account.arrears_fen)} yuan must be paid first).",
        )
    if account.retiree and not letter.payout_requested:
        return Refusal(
            RejectionReason.RETIREE,
            "退休人员不在转移接续范围内；异地安置可申请个人账户余额一次性支付给本人 (retirees are "
            "outside the transfer; a resettled retiree may ask for the balance to be paid out).",
        )
    plan = release_plan(own_code=own_code, letter=letter, account=account)
    if plan.disposition is BalanceDisposition.PAID_TO_PERSON and not payout_matches_books(letter, account):
        return Refusal(
            RejectionReason.INVALID_DOCUMENT,
            "余额支付申请的姓名、身份号码或收款账户户名与转出地记录不符 (the payout request's name, ID "
            "number or account holder does not match the outgoing books).",
        )
    if plan.disposition is BalanceDisposition.TRANSFERRED and not payee_known:
        return Refusal(
            RejectionReason.OTHER,
            "机构目录中没有转入地的有效银行账户，无法划转 (the agency directory lists no valid bank "
            "account for the receiving agency: the balance cannot be transferred).",
        )
    return None


def release_plan(*, own_code: str, letter: ContactLetterV2, account: PersonAccount) -> ReleasePlan:
    """What happens to the balance at the outgoing place (see the module's table)."""
    balance = account.balance_fen if account.insurance_type is InsuranceType.EMPLOYEE else 0
    if balance == 0:
        return ReleasePlan(BalanceDisposition.NO_ACCOUNT, 0, False, 0, None)
    if within_guangdong(own_code, letter.to_region):
        return ReleasePlan(BalanceDisposition.RETAINED_IN_PROVINCE, 0, True, 0, None)
    if letter.payout_account is not None:
        return ReleasePlan(BalanceDisposition.PAID_TO_PERSON, 0, False, balance, letter.payout_account)
    return ReleasePlan(BalanceDisposition.TRANSFERRED, balance, False, 0, None)


def check_form(
    *,
    own_code: str,
    from_region: str,
    id_number: str,
    payout_requested: bool,
    form: InformationFormV2,
) -> Refusal | None:
    """The receiving agency's checks on an information form, against what its letter asked."""
    if form.person.id_number != id_number:
        return Refusal(
            RejectionReason.INVALID_DOCUMENT,
            "信息表的参保人与联系函不符 (the form is for another person than the letter).",
        )
    disposition = form.balance_disposition
    if disposition is BalanceDisposition.RETAINED_IN_PROVINCE and not within_guangdong(own_code, from_region):
        return Refusal(
            RejectionReason.INVALID_DOCUMENT,
            "余额留存仅适用于广东省内转移 (the balance may stay behind only within Guangdong).",
        )
    if disposition is BalanceDisposition.PAID_TO_PERSON and not payout_requested:
        return Refusal(
            RejectionReason.INVALID_DOCUMENT,
            "联系函未申请余额支付给本人 (the letter did not ask for the balance to be paid out).",
        )
    if disposition is BalanceDisposition.TRANSFERRED and payout_requested:
        return Refusal(
            RejectionReason.INVALID_DOCUMENT,
            "联系函申请余额支付给本人，转入地不能接收划转 (the letter asked for a payout: this "
            "agency cannot take the balance).",
        )
    return None


def reminder_due(
    *,
    today: date,
    due_date: date | None,
    reminders_sent: int,
    last_reminder_on: date | None,
    calendar: WorkdayCalendar,
) -> bool:
    """Is a reminder for the current step due today (see `REMINDER_INTERVAL_WORKING_DAYS`)?"""
    if due_date is None or today <= due_date:
        return False
    if reminders_sent == 0 or last_reminder_on is None:
        return True
    return calendar.working_days_between(last_reminder_on, today) >= REMINDER_INTERVAL_WORKING_DAYS
