"""Realistic, reproducible insured people for demos and tests, and the tools to load them.

Everything is driven by a `random.Random` you pass in, so a seed reproduces the same people. The
people have valid 公民身份号码 (GB 11643 check character; the 17th digit agrees with the gender),
Chinese names (some with the middle dot, e.g. 买买提·艾力), contribution periods that add up to
the months paid, and balances in integer fen.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import date
from typing import Protocol, TypedDict, Unpack, runtime_checkable

from agents.ledger.base import (
    LedgerPeriod,
    LedgerPort,
    PersonAccount,
    SeedableLedger,
    period_months,
)
from schemas.common import Gender, InsuranceType, make_citizen_id

__all__ = [
    "PersonOptions",
    "generate_people",
    "generate_person",
    "is_guangdong_internal",
    "make_id_number",
    "make_mover",
    "random_name",
    "seed_accounts",
    "seed_ledger",
    "total_balance",
]

_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
)
_COMPOUND_SURNAMES = ("欧阳", "司马", "诸葛", "上官", "东方")
_GIVEN_MALE = "伟强磊军洋勇杰涛明超刚平辉鹏华飞鑫波斌宇浩凯健俊帆帅旭宁龙林"
_GIVEN_FEMALE = "芳娜敏静丽艳娟霞秀玲桂英华慧巧美娅倩婷雪琳晶颖莉洁萍燕红"
_UYGHUR_MALE = ("买买提", "艾力", "阿不都", "吐尔逊", "伊力哈木", "热合曼", "阿布来提")
_UYGHUR_FEMALE = ("阿依古丽", "古丽娜尔", "热依拉", "帕提古丽", "米热古丽", "阿依努尔")
_UYGHUR_FATHER = ("艾力", "吐尔逊", "买买提", "阿不力孜", "玉素甫", "卡德尔")

_GUANGDONG_PREFIX = "44"


def make_id_number(region: str, birth_date: date, seq: int) -> str:
    """A valid 18-character ID number; an odd `seq` makes a man, an even one a woman."""
    return make_citizen_id(region, birth_date, seq)


def random_name(rng: random.Random, gender: Gender) -> str:
    """A plausible name: mostly Han (some with compound surnames), ~5% Uyghur with a middle dot."""
    roll = rng.random()
    if roll < 0.05:
        given = _UYGHUR_MALE if gender is Gender.MALE else _UYGHUR_FEMALE
        return f"{rng.choice(given)}\u00b7{rng.choice(_UYGHUR_FATHER)}"
    surname = rng.choice(_COMPOUND_SURNAMES) if roll < 0.08 else rng.choice(_SURNAMES)
    pool = _GIVEN_MALE if gender is Gender.MALE else _GIVEN_FEMALE
    length = 1 if rng.random() < 0.4 else 2
    return surname + "".join(rng.choice(pool) for _ in range(length))


def _month(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _month_index(month: str) -> int:
    return int(month[:4]) * 12 + int(month[5:7]) - 1


def _periods(
    rng: random.Random,
    *,
    first_month: str,
    last_month: str,
    home_region: str,
    insurance_type: InsuranceType,
) -> tuple[LedgerPeriod, ...]:
    """Contribution periods from `first_month` to `last_month`: 1-3 stretches, maybe with gaps,
    in earlier regions before the home region."""
    start, end = _month_index(first_month), _month_index(last_month)
    count = rng.randint(1, min(3, max(1, (end - start + 1) // 12)))
    other_regions = ["110000", "310000", "320100", "330100", "360400", "410100", "510100"]
    cuts = sorted(rng.sample(range(start + 1, end + 1), count - 1)) if count > 1 else []
    bounds = [start, *cuts, end + 1]
    periods: list[LedgerPeriod] = []
    for i in range(count):
        lo, hi = bounds[i], bounds[i + 1] - 1
        if i < count - 1 and hi - lo > 3 and rng.random() < 0.3:
            hi -= rng.randint(1, 3)  # a gap of up to 3 months keeps continuity
        region = home_region if i == count - 1 else rng.choice(other_regions)
        periods.append(
            LedgerPeriod(
                from_month=_month(lo),
                to_month=_month(hi),
                region=region,
                insurance_type=insurance_type,
                months=period_months(_month(lo), _month(hi)),
            )
        )
    return tuple(periods)


class PersonOptions(TypedDict, total=False):
    """Keyword options of `generate_person`, for the functions that pass them on."""

    as_of: date
    insurance_type: InsuranceType | None
    participation: str
    enrolled: bool
    retiree: bool | None
    arrears: bool | None
    zero_balance: bool | None


def generate_person(
    rng: random.Random,
    region: str,
    seq: int,
    *,
    as_of: date = date(2026, 1, 1),
    insurance_type: InsuranceType | None = None,
    participation: str = "stopped",
    enrolled: bool = True,
    retiree: bool | None = None,
    arrears: bool | None = None,
    zero_balance: bool | None = None,
) -> PersonAccount:
    """One insured person of `region` (a 6-digit code). `seq` (0..999) keeps ID numbers unique
    among people born on the same day; None options are chosen at random with realistic odds.

    The default ``participation="stopped"`` is a person ready to transfer out (停保 done).
    """
    if insurance_type is None:
        insurance_type = InsuranceType.EMPLOYEE if rng.random() < 0.8 else InsuranceType.RESIDENT
    insurance_type = InsuranceType(insurance_type)
    if retiree is None:
        retiree = rng.random() < 0.05
    if arrears is None:
        arrears = rng.random() < 0.03
    if zero_balance is None:
        zero_balance = rng.random() < 0.05
    age = rng.randint(61, 75) if retiree else rng.randint(20, 58)
    birth = date(as_of.year - age, rng.randint(1, 12), rng.randint(1, 28))
    id_number = make_id_number(region, birth, seq)
    gender = Gender.MALE if seq % 2 else Gender.FEMALE
    last = _month_index(f"{as_of.year:04d}-{as_of.month:02d}") - 1
    earliest = _month_index(f"{birth.year + 18:04d}-{birth.month:02d}")
    first = rng.randint(max(earliest, last - 360), last)
    periods = _periods(
        rng,
        first_month=_month(first),
        last_month=_month(last),
        home_region=region,
        insurance_type=insurance_type,
    )
    months_paid = sum(p.months for p in periods)
    has_account = insurance_type is InsuranceType.EMPLOYEE and not zero_balance
    # Roughly 2% of wages go to the personal account: a few hundred yuan a year, in fen.
    balance = rng.randint(5_000, 40_000) * months_paid + rng.randint(0, 99) if has_account else 0
    return PersonAccount(
        id_number=id_number,
        name=random_name(rng, gender),
        gender=gender,
        insurance_type=insurance_type,
        enrolled=enrolled,
        participation="active" if participation == "active" else "stopped",
        region=region,
        arrears_fen=rng.randint(10_000, 300_000) if arrears else 0,
        retiree=retiree,
        months_paid=months_paid,
        deemed_months=rng.choice((24, 36, 48, 60)) if rng.random() < 0.04 else 0,
        balance_fen=balance,
        periods=periods,
    )


def generate_people(
    region: str, count: int, rng: random.Random, **options: Unpack[PersonOptions]
) -> list[PersonAccount]:
    """`count` distinct people of `region` (options as for `generate_person`)."""
    people: dict[str, PersonAccount] = {}
    seq = 0
    while len(people) < count:
        person = generate_person(rng, region, seq % 1000, **options)
        people.setdefault(person.id_number, person)
        seq += 1
    return list(people.values())


def make_mover(
    rng: random.Random,
    outgoing_region: str,
    receiving_region: str,
    seq: int,
    **options: Unpack[PersonOptions],
) -> tuple[PersonAccount, PersonAccount]:
    """A person moving between two agencies: (account at the outgoing agency, stopped and ready to
    transfer; account at the receiving agency, newly enrolled and active with nothing in it yet).

    Both sides of Guangdong within the province (44xxxx to 44xxxx) are ordinary accounts here;
    the retain rule is the agent's to apply.
    """
    outgoing = generate_person(rng, outgoing_region, seq, **options)
    receiving = replace(
        outgoing,
        enrolled=True,
        participation="active",
        region=receiving_region,
        arrears_fen=0,
        months_paid=0,
        deemed_months=0,
        balance_fen=0,
        periods=(),
    )
    return outgoing, receiving


def is_guangdong_internal(outgoing_region: str, receiving_region: str) -> bool:
    """Both regions in Guangdong: months move, the balance stays (no transfer, no payout)."""
    return outgoing_region.startswith(_GUANGDONG_PREFIX) and receiving_region.startswith(
        _GUANGDONG_PREFIX
    )


@runtime_checkable
class _Seedable(Protocol):
    async def put_account(self, account: PersonAccount) -> None: ...


async def seed_ledger(ledger: SeedableLedger | _Seedable, accounts: Iterable[PersonAccount]) -> int:
    """Load accounts into a ledger; returns how many. Replaces accounts with the same ID."""
    count = 0
    for account in accounts:
        await ledger.put_account(account)
        count += 1
    return count


@runtime_checkable
class _BulkSeedable(Protocol):
    async def put_accounts(self, accounts: Sequence[PersonAccount]) -> None: ...


async def seed_accounts(ledger: LedgerPort, accounts: Sequence[PersonAccount]) -> None:
    """Load accounts into a ledger the tools can fill: in one transaction where the ledger can
    (`SqliteLedger.put_accounts`), else one by one (`SeedableLedger.put_account`)."""
    if isinstance(ledger, _BulkSeedable):
        await ledger.put_accounts(accounts)
    elif isinstance(ledger, _Seedable):
        await seed_ledger(ledger, accounts)
    else:
        raise TypeError(f"{type(ledger).__name__} cannot be seeded by the tools")


def total_balance(accounts: Sequence[PersonAccount]) -> int:
    """The money in a set of accounts, in fen: the baseline for conservation checks."""
    return sum(a.balance_fen for a in accounts)
