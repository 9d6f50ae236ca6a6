"""Types shared by every document: codes, people, months, money, bank accounts.

Each type checks its own input and says precisely what is wrong, naming the rule broken but never
echoing the value: error details travel into dead-letter headers and logs, and ID numbers, names
and account numbers are personal data. Every constraint a JSON Schema can express is also put in
the generated schema; checks that only code can make (the ID check digit, its birth date, the
gender it encodes) are listed in each type's description.
"""

from __future__ import annotations

import operator
import re
from datetime import date
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "MAX_FEN",
    "MAX_MONTHS",
    "AccountName",
    "AccountNumber",
    "Address",
    "AgencyCode",
    "AgencyDetails",
    "AgencyName",
    "BankAccount",
    "BankCode",
    "BankName",
    "CitizenId",
    "Document",
    "Fen",
    "Gender",
    "InsuranceType",
    "LongText",
    "Month",
    "Months",
    "Person",
    "PersonName",
    "Phone",
    "PositiveFen",
    "PositiveMonths",
    "Reference",
    "ShortText",
    "citizen_id_check_char",
    "gender_of_citizen_id",
    "make_citizen_id",
    "month_index",
    "month_span",
]

MAX_FEN = 10**15
"""Upper bound on any amount (10 trillion yuan): below 2**53, so every JSON client reads it exactly."""

MAX_MONTHS = 1200
"""Upper bound on any count of months (a hundred years)."""


def _fail(kind: str, message: str, **context: Any) -> PydanticCustomError:
    return PydanticCustomError(kind, message, context or None)


# --- agency codes ----------------------------------------------------------------------------

_AGENCY_CODE = re.compile(r"[0-9]{6}")


def _check_agency_code(value: str) -> str:
    if not _AGENCY_CODE.fullmatch(value):
        raise _fail(
            "agency_code",
            "agency code must be exactly 6 digits (a GB/T 2260 region code), got {length} characters",
            length=len(value),
        )
    return value


AgencyCode = Annotated[
    str,
    Strict(),
    AfterValidator(_check_agency_code),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^[0-9]{6}$",
            "description": "6-digit region code (医保区划, GB/T 2260) identifying an agency; "
            "000000 is the reconciliation agent.",
            "examples": ["440300"],
        }
    ),
]

# --- 公民身份号码 -------------------------------------------------------------------------------

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK_CHARS = "10X98765432"
_ID_SHAPE = re.compile(r"[0-9]{17}[0-9X]")
_ID_FIRST17 = re.compile(r"[0-9]{17}")


def citizen_id_check_char(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character (GB 11643-1999) for the first 17 digits."""
    if not _ID_FIRST17.fullmatch(first17):
        raise ValueError("the first 17 characters of an ID number must be digits")
    total = sum(map(operator.mul, map(int, first17), _ID_WEIGHTS))
    return _ID_CHECK_CHARS[total % 11]


def make_citizen_id(region: str, birth: date, sequence: int) -> str:
    """Build a valid ID number: 6-digit region, birth date, 3-digit sequence (odd = male), check."""
    if not _AGENCY_CODE.fullmatch(region):
        raise ValueError("region must be 6 digits")
    if not 0 <= sequence <= 999:
        raise ValueError("sequence must be 0..999")
    first17 = f"{region}{birth:%Y%m%d}{sequence:03d}"
    return first17 + citizen_id_check_char(first17)


def gender_of_citizen_id(id_number: str) -> Gender:
    """The gender the 17th character encodes: odd is male, even is female."""
    return Gender.MALE if int(id_number[16]) % 2 else Gender.FEMALE


def _uppercase_x(value: Any) -> Any:
    # Lowercase x is common on paper forms and in older systems; the canonical form is X.
    return value.upper() if isinstance(value, str) else value


def _check_citizen_id(value: str) -> str:
    if len(value) != 18:
        raise _fail("citizen_id_length", "ID number must be 18 characters, got {length}", length=len(value))
    if not _ID_SHAPE.fullmatch(value):
        raise _fail("citizen_id_characters", "ID number must be 17 digits followed by a digit or X")
    try:
        birth = date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        raise _fail("citizen_id_birth_date", "ID number characters 7-14 are not a valid birth date") from None
    if birth.year < 1850:
        raise _fail("citizen_id_birth_date", "ID number birth year is before 1850")
    expected = citizen_id_check_char(value[:17])
    if value[17] != expected:
        raise _fail(
            "citizen_id_check_digit",
            "ID number check character is wrong: the first 17 digits require {expected}",
            expected=expected,
        )
    return value


CitizenId = Annotated[
    str,
    BeforeValidator(_uppercase_x),
    Strict(),
    AfterValidator(_check_citizen_id),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^[0-9]{17}[0-9Xx]$",
            "description": "公民身份号码 (GB 11643-1999), 18 characters. Checked in code beyond this "
            "pattern: the ISO 7064 MOD 11-2 check character, a valid birth date in characters 7-14. "
            "A lowercase x is accepted and normalised to X.",
            "examples": ["11010519491231002X"],
        }
    ),
]

# --- names -----------------------------------------------------------------------------------

_MIDDLE_DOT = "\u00b7"
# Look-alikes of the middle dot that forms and input methods produce; GB 18030 names use U+00B7.
_DOT_LOOKALIKES = str.maketrans(dict.fromkeys("\u2022\u2027\u30fb\u2219\u22c5\uff65", _MIDDLE_DOT))
_HAN = (
    "\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    "\U00020000-\U0002a6df\U0002a700-\U0002ee5f\U0002f800-\U0002fa1f\U00030000-\U000323af"
)
_NAME = re.compile(f"[{_HAN}]+(?:{_MIDDLE_DOT}[{_HAN}]+)*")
_NAME_MAX = 100


def _normalise_dots(value: Any) -> Any:
    return value.translate(_DOT_LOOKALIKES) if isinstance(value, str) else value


def _check_name(value: str) -> str:
    if not value:
        raise _fail("person_name", "name must not be empty")
    if len(value) > _NAME_MAX:
        raise _fail("person_name", "name must be at most {max} characters", max=_NAME_MAX)
    if not _NAME.fullmatch(value):
        raise _fail(
            "person_name",
            "name must be Chinese characters, parts separated by single middle dots (·) "
            "with none at either end",
        )
    return value


PersonName = Annotated[
    str,
    BeforeValidator(_normalise_dots),
    Strict(),
    AfterValidator(_check_name),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": _NAME_MAX,
            "pattern": f"^[^\\s{_MIDDLE_DOT}]+({_MIDDLE_DOT}[^\\s{_MIDDLE_DOT}]+)*$",
            "description": "The person's name as registered: Chinese characters of any length, "
            "parts joined by U+00B7 middle dots (e.g. 买买提·艾力). Checked in code beyond this "
            "pattern: only Han characters (CJK unified ideographs, all extensions). Look-alike dots "
            "(U+2022, U+2027, U+30FB, U+2219, U+22C5, U+FF65) are normalised to U+00B7.",
            "examples": ["张伟", "买买提·艾力"],
        }
    ),
]

# --- free text -------------------------------------------------------------------------------

_TEXT = re.compile(r"\S(?:[\s\S]*\S)?")


def _text(max_length: int, what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not value or not _TEXT.fullmatch(value):
            raise _fail("text", "{what} must not be blank nor start or end with whitespace", what=what)
        if len(value) > max_length:
            raise _fail("text", "{what} must be at most {max} characters", what=what, max=max_length)
        return value

    return AfterValidator(check)


def _text_schema(max_length: int, **extra: Any) -> WithJsonSchema:
    return WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": max_length,
            "pattern": r"^\S([\s\S]*\S)?$",
            **extra,
        }
    )


BankName = Annotated[str, Strict(), _text(100, "bank name"), _text_schema(100)]
AccountName = Annotated[str, Strict(), _text(100, "account name"), _text_schema(100)]
AgencyName = Annotated[str, Strict(), _text(100, "agency name"), _text_schema(100)]
Address = Annotated[str, Strict(), _text(200, "address"), _text_schema(200)]
ShortText = Annotated[str, Strict(), _text(64, "text"), _text_schema(64)]
"""A reference or number: letter numbers, seal references."""
Reference = Annotated[str, Strict(), _text(128, "reference"), _text_schema(128)]
"""An identifier issued by another system: electronic seal references, bank references."""
LongText = Annotated[str, Strict(), _text(1000, "text"), _text_schema(1000)]
"""Explanations addressed to people: rejection texts."""


# --- insurance, gender -----------------------------------------------------------------------


class InsuranceType(StrEnum):
    """险种: the national platform's insutype codes."""

    EMPLOYEE = "310"
    """职工基本医疗保险: has a personal account."""
    RESIDENT = "390"
    """城乡居民基本医疗保险: has no personal account."""


class Gender(StrEnum):
    MALE = "male"
    FEMALE = "female"


# --- months ----------------------------------------------------------------------------------

_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")


_FIRST_YEAR, _LAST_YEAR = 1900, 2099
_VALID_MONTHS = frozenset(
    f"{year}-{month:02d}" for year in range(_FIRST_YEAR, _LAST_YEAR + 1) for month in range(1, 13)
)


def _check_month(value: str) -> str:
    if value in _VALID_MONTHS:  # every valid month: one set lookup
        return value
    match = _MONTH.fullmatch(value)
    if match is None:
        raise _fail("month", "month must be written YYYY-MM")
    year, month = int(match[1]), int(match[2])
    if not 1 <= month <= 12:
        raise _fail("month", "month must be 01 to 12, got {month}", month=month)
    if not _FIRST_YEAR <= year <= _LAST_YEAR:
        raise _fail("month", "year must be 1900 to 2099, got {year}", year=year)
    return value


Month = Annotated[
    str,
    Strict(),
    AfterValidator(_check_month),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^(19|20)[0-9]{2}-(0[1-9]|1[0-2])$",
            "description": "A calendar month, YYYY-MM, years 1900-2099.",
            "examples": ["2024-03"],
        }
    ),
]


def month_index(month: str) -> int:
    """Months since year 0, so that month arithmetic is integer arithmetic."""
    return int(month[:4]) * 12 + int(month[5:7]) - 1


def month_span(first: str, last: str) -> int:
    """Number of calendar months from ``first`` to ``last``, both included (0 if reversed)."""
    return max(0, month_index(last) - month_index(first) + 1)


# --- counts and money ------------------------------------------------------------------------

Months = Annotated[
    int,
    Strict(),
    Field(ge=0, le=MAX_MONTHS, description="Whole months, never negative."),
]
PositiveMonths = Annotated[
    int,
    Strict(),
    Field(ge=1, le=MAX_MONTHS, description="Whole months, at least one."),
]
Fen = Annotated[
    int,
    Strict(),
    Field(ge=0, le=MAX_FEN, description="An amount in integer fen (分, 0.01 yuan), never negative."),
]
PositiveFen = Annotated[
    int,
    Strict(),
    Field(ge=1, le=MAX_FEN, description="An amount in integer fen (分, 0.01 yuan), more than zero."),
]

# --- bank accounts ---------------------------------------------------------------------------

_BANK_CODE = re.compile(r"[0-9]{12}")
_ACCOUNT_NUMBER = re.compile(r"[0-9]{6,32}")


def _check_bank_code(value: str) -> str:
    if not _BANK_CODE.fullmatch(value):
        raise _fail("bank_code", "bank code must be the 12-digit CNAPS bank number (联行号)")
    return value


def _check_account_number(value: str) -> str:
    if not _ACCOUNT_NUMBER.fullmatch(value):
        raise _fail("account_number", "account number must be 6 to 32 digits")
    return value


BankCode = Annotated[
    str,
    Strict(),
    AfterValidator(_check_bank_code),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^[0-9]{12}$",
            "description": "12-digit CNAPS bank number (联行号).",
        }
    ),
]
AccountNumber = Annotated[
    str,
    Strict(),
    AfterValidator(_check_account_number),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^[0-9]{6,32}$",
            "description": "Bank account number, 6 to 32 digits.",
        }
    ),
]

_PHONE = re.compile(r"\+?[0-9][0-9-]{3,30}")


def _check_phone(value: str) -> str:
    if not _PHONE.fullmatch(value):
        raise _fail("phone", "phone must be digits and hyphens, optionally led by +, 4-32 long")
    return value


Phone = Annotated[
    str,
    Strict(),
    AfterValidator(_check_phone),
    WithJsonSchema({"type": "string", "pattern": r"^\+?[0-9][0-9-]{3,30}$", "examples": ["0755-12393"]}),
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BankAccount(_Frozen):
    """An account that a balance is paid from or into."""

    bank_name: BankName
    bank_code: BankCode
    account_name: AccountName
    account_number: AccountNumber


class Person(_Frozen):
    """The insured person. ``gender`` must agree with the ID number's 17th digit (odd is male)."""

    name: PersonName
    gender: Gender
    id_number: CitizenId

    @model_validator(mode="after")
    def _gender_agrees_with_id(self) -> Self:
        if gender_of_citizen_id(self.id_number) is not self.gender:
            raise _fail(
                "gender_mismatch",
                "gender does not agree with id_number (its 17th digit is odd for male, even for female)",
            )
        return self


class AgencyDetails(_Frozen):
    """How to reach an agency and where to pay it."""

    name: AgencyName
    address: Address
    phone: Phone
    bank_account: BankAccount


class Document(_Frozen):
    """A business document carried as an envelope's payload, one model per (type, version)."""

    MESSAGE_TYPE: ClassVar[str]
    VERSION: ClassVar[int]
