"""Load insured people into an agency's ledger from a file: CSV or JSON lines.

For a trial, or a migration from the core system (``jiexu ledger import FILE``). One row per
person; a CSV file starts with a header row naming the columns (any order); a JSON-lines file
holds one object per line with the same keys (blank lines are skipped). UTF-8, with or without a
byte-order mark.

====================  ========  ==========================================================
column                required  meaning
====================  ========  ==========================================================
``id_number``         yes       公民身份号码: 18 characters, the GB 11643 check character
                                right, a valid birth date; a lowercase x is read as X
``name``              yes       as registered: Han characters, parts joined by ``·``
``gender``            yes       ``male`` or ``female``; must agree with the ID number's 17th
                                digit (odd is male)
``insurance_type``    yes       ``310`` (employee, 职工) or ``390`` (resident, 居民: no
                                personal account, so ``balance_fen`` must be 0)
``participation``     yes       ``active`` (paying here) or ``stopped`` (ready to transfer)
``months_paid``       yes       实际缴费月数, whole months
``deemed_months``     yes       视同缴费月数, whole months
``periods``           yes       the contribution periods (below); they add up to
                                ``months_paid`` (empty only when it is 0)
``balance_fen``       yes       personal-account balance in integer fen (分): ``1234567`` is
                                12,345.67 yuan; no decimal point, no separators
``arrears_fen``       no (0)    arrears in integer fen
``retiree``           no        ``true``/``false`` (CSV also ``1``/``0``); default false
``enrolled``          no        ``true``/``false``; default true (false: the relationship
                                here has already been transferred out)
``enrolment_start``   no        ``YYYY-MM``, the current participation's first month here;
                                empty or ``null`` when unknown or ``enrolled`` is false
====================  ========  ==========================================================

Periods, in CSV: ``FROM..TO:REGION:TYPE:MONTHS``, several separated by ``;``, oldest first, e.g.
``2019-01..2020-12:440300:310:24;2021-01..2021-06:440300:310:5`` (``:MONTHS`` may be left off
when every month of the span was paid). In JSON lines: a list of objects with ``from_month``,
``to_month``, ``region``, ``insurance_type`` and ``months`` (JSON integers for every count and
amount; ``"100"`` is refused). Each period must be valid as in the information form: months
written ``YYYY-MM``, a 6-digit region, ``1 <= months <=`` the calendar months it spans, periods
in order without overlapping.

All or nothing. Every row is checked first (the contract's own types, `schemas.common`, and the
information form's rules); any problem is reported as ``line N: field: what is wrong`` (never
with the ID number in it), and nothing is imported. Then every row is compared with the books:

* a person not in the books is added;
* a person already there, identical in every column, is left alone (so importing the same file
  again changes nothing);
* a person already there with different values is refused, naming the columns that differ,
  and again nothing is imported. An import only adds people: once in the books, a person
  changes through the agent's idempotent operations (a transfer moves months and money), and a
  file that overwrote them would undo a transfer. Correct a person in the core system.

The new people are written together (one transaction on `SqliteLedger` and `PostgresLedger`,
which have ``put_accounts``). Import before the agent serves these people: a transfer that
enrols one of them between the check and the write would be overwritten.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, StrictBool, ValidationError

from agents.domain.books import LedgerPeriod, PersonAccount, period_months
from schemas.common import (
    MAX_MONTHS,
    CitizenId,
    Fen,
    Gender,
    InsuranceType,
    Month,
    Months,
    PersonName,
    gender_of_citizen_id,
)
from schemas.errors import JiexuError
from schemas.information import ContributionPeriod
from schemas.pii import mask_value

__all__ = [
    "COLUMNS",
    "REQUIRED_COLUMNS",
    "AccountBook",
    "FileFormat",
    "ImportReport",
    "LedgerImportRejected",
    "RowProblem",
    "format_people",
    "import_people",
    "parse_people",
    "read_people",
]

FileFormat = Literal["csv", "jsonl"]

REQUIRED_COLUMNS = (
    "id_number",
    "name",
    "gender",
    "insurance_type",
    "participation",
    "months_paid",
    "deemed_months",
    "periods",
    "balance_fen",
)
COLUMNS = (*REQUIRED_COLUMNS, "arrears_fen", "retiree", "enrolled", "enrolment_start")
_FEN_COLUMNS = frozenset({"balance_fen", "arrears_fen"})
_MONTH_COLUMNS = frozenset({"months_paid", "deemed_months"})
_SUFFIXES: Mapping[str, FileFormat] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
_INTEGER = re.compile(r"[+-]?[0-9]+")
_PERIOD_HELP = "write FROM..TO:REGION:TYPE:MONTHS, e.g. 2019-01..2020-12:440300:310:24"


@dataclass(frozen=True, order=True)
class RowProblem:
    """What is wrong with one field of one line (line 1 is a CSV file's header)."""

    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.message}"


class LedgerImportRejected(JiexuError):
    """The file was refused; nothing was imported. ``problems`` lists every one found."""

    def __init__(self, problems: Sequence[RowProblem]) -> None:
        self.problems = tuple(sorted(problems))
        first = "; ".join(str(p) for p in self.problems[:3])
        more = f" (and {len(self.problems) - 3} more)" if len(self.problems) > 3 else ""
        super().__init__(f"nothing imported, {len(self.problems)} problem(s): {first}{more}")


@dataclass(frozen=True)
class ImportReport:
    """What an import did: ``rows`` in the file, ``added`` to the books, ``unchanged`` (there
    already, identical)."""

    rows: int
    added: int
    unchanged: int


@runtime_checkable
class AccountBook(Protocol):
    """What the importer needs of a ledger (`SeedableLedger` has it)."""

    async def lookup(self, id_number: str) -> PersonAccount | None: ...

    async def put_account(self, account: PersonAccount) -> None: ...


class _Row(BaseModel):
    """One row's fields, each checked with the contract's type; cross-field rules follow."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id_number: CitizenId
    name: PersonName
    gender: Gender
    insurance_type: InsuranceType
    participation: Literal["active", "stopped"]
    months_paid: Months
    deemed_months: Months
    periods: tuple[ContributionPeriod, ...]
    balance_fen: Fen
    arrears_fen: Fen = 0
    retiree: StrictBool = False
    enrolled: StrictBool = True
    enrolment_start: Month | None = None


# --- reading the file -------------------------------------------------------------------------


def _format_of(path: Path, given: FileFormat | None) -> FileFormat:
    if given is not None:
        return given
    found = _SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise LedgerImportRejected(
            [RowProblem(0, "file", "name it .csv or .jsonl, or give the format (csv or jsonl)")]
        )
    return found


def _csv_period(text: str) -> dict[str, Any] | None:
    parts = [part.strip() for part in text.split(":")]
    if len(parts) not in (3, 4):
        return None
    span = parts[0].split("..")
    if len(span) != 2:
        return None
    period: dict[str, Any] = {
        "from_month": span[0].strip(),
        "to_month": span[1].strip(),
        "region": parts[1],
        "insurance_type": parts[2],
    }
    if len(parts) == 4:
        period["months"] = int(parts[3]) if _INTEGER.fullmatch(parts[3]) else parts[3]
    else:
        try:
            period["months"] = period_months(period["from_month"], period["to_month"])
        except ValueError:
            period["months"] = 1  # the months check on from/to reports the real problem
    return period


def _csv_value(column: str, text: str, line: int, problems: list[RowProblem]) -> Any:
    """A CSV cell as the JSON value it stands for; None: take the default."""
    text = text.strip()
    if column in _FEN_COLUMNS or column in _MONTH_COLUMNS:
        if text == "" and column == "arrears_fen":
            return None
        if not _INTEGER.fullmatch(text):
            unit = "fen" if column in _FEN_COLUMNS else "months"
            problems.append(
                RowProblem(line, column, f"must be a whole number of {unit} (digits only)")
            )
            return None
        return int(text)
    if text == "" and column in ("retiree", "enrolled", "enrolment_start"):
        return None  # the default
    if column in ("retiree", "enrolled"):
        lowered = text.lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        problems.append(RowProblem(line, column, "must be true or false"))
        return None
    if column == "periods":
        periods: list[dict[str, Any]] = []
        for number, part in enumerate((p for p in text.split(";") if p.strip()), 1):
            period = _csv_period(part)
            if period is None:
                problems.append(RowProblem(line, f"periods[{number}]", _PERIOD_HELP))
                return None
            periods.append(period)
        return periods
    return text


def _csv_rows(text: str, problems: list[RowProblem]) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        problems.append(RowProblem(1, "header", "the file is empty: the first row names the columns"))
        return
    names = [name.strip() for name in header]
    unknown = [name for name in names if name not in COLUMNS]
    missing = [name for name in REQUIRED_COLUMNS if name not in names]
    for name in unknown:
        problems.append(RowProblem(1, name, f"unknown column (the columns: {', '.join(COLUMNS)})"))
    for name in missing:
        problems.append(RowProblem(1, name, "required column missing from the header"))
    if unknown or missing:
        return
    for cells in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(names):
            problems.append(
                RowProblem(line, "row", f"has {len(cells)} cells, the header {len(names)}")
            )
            continue
        values = {
            name: _csv_value(name, cell, line, problems)
            for name, cell in zip(names, cells, strict=True)
        }
        # A cell already reported is left out; the row's other fields are still checked.
        yield line, {name: value for name, value in values.items() if value is not None}


def _jsonl_rows(text: str, problems: list[RowProblem]) -> Iterator[tuple[int, dict[str, Any]]]:
    for line, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            problems.append(RowProblem(line, "json", f"not JSON ({exc.msg}, column {exc.colno})"))
            continue
        if not isinstance(value, dict):
            problems.append(RowProblem(line, "json", "each line must be one JSON object"))
            continue
        yield line, value


# --- checking a row ---------------------------------------------------------------------------


def _field_name(loc: tuple[int | str, ...]) -> str:
    name = ""
    for part in loc:
        name += f"[{part + 1}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "row"


def _message(error: Mapping[str, Any], field: str) -> str:
    if error["type"] in ("int_type", "int_parsing", "int_from_float"):
        unit = "fen" if field in _FEN_COLUMNS else "months"
        return f"must be a whole number of {unit} (a JSON integer)"
    if error["type"] == "extra_forbidden":
        return f"unknown column (the columns: {', '.join(COLUMNS)})"
    if error["type"] == "missing":
        return "required, missing"
    # Messages never carry the input; masking is a second line of defence for ID numbers.
    return mask_value(str(error["msg"]))


def _cross_checks(row: _Row) -> list[tuple[str, str]]:
    """The rules between fields: the information form's, and the ID number's gender digit."""
    found: list[tuple[str, str]] = []
    if gender_of_citizen_id(row.id_number) is not row.gender:
        found.append(("gender", "does not agree with the ID number (17th digit odd: male)"))
    if row.insurance_type is InsuranceType.RESIDENT and row.balance_fen != 0:
        found.append(
            ("balance_fen", "must be 0 for resident insurance (390): it has no personal account")
        )
    if row.enrolment_start is not None and not row.enrolled:
        found.append(("enrolment_start", "must be empty when enrolled is false: it has ended"))
    if row.months_paid + row.deemed_months > MAX_MONTHS:
        found.append(("deemed_months", f"months_paid plus deemed_months exceed {MAX_MONTHS}"))
    for number, (earlier, later) in enumerate(pairwise(row.periods), 2):
        if later.from_month <= earlier.to_month:
            found.append(
                (
                    f"periods[{number}]",
                    f"starts before period {number - 1} ends: oldest first, no overlaps",
                )
            )
    total = sum(period.months for period in row.periods)
    if total != row.months_paid:
        found.append(
            ("periods", f"add up to {total} months but months_paid is {row.months_paid}")
        )
    return found


def _account(row: _Row, region: str) -> PersonAccount:
    return PersonAccount(
        id_number=row.id_number,
        name=row.name,
        gender=row.gender,
        insurance_type=row.insurance_type,
        enrolled=row.enrolled,
        participation=row.participation,
        region=region,
        arrears_fen=row.arrears_fen,
        retiree=row.retiree,
        months_paid=row.months_paid,
        deemed_months=row.deemed_months,
        balance_fen=row.balance_fen,
        # The form's period has the books' period's five fields (schemas.information).
        periods=tuple(LedgerPeriod.from_json(p.model_dump(mode="json")) for p in row.periods),
        enrolment_start=row.enrolment_start,
    )


def parse_people(
    text: str, region: str, file_format: FileFormat
) -> list[tuple[int, PersonAccount]]:
    """Every row of ``text`` as ``(line, account)`` for an agency ``region``; raises
    `LedgerImportRejected` listing every problem if any row is bad."""
    problems: list[RowProblem] = []
    text = text.removeprefix("\ufeff")
    rows = _csv_rows(text, problems) if file_format == "csv" else _jsonl_rows(text, problems)
    people: list[tuple[int, PersonAccount]] = []
    first_line: dict[str, int] = {}
    for line, values in rows:
        reported = {p.field.partition("[")[0] for p in problems if p.line == line}
        try:
            row = _Row.model_validate(values)
        except ValidationError as exc:
            for error in exc.errors(include_url=False, include_input=False):
                field = _field_name(tuple(error["loc"]))
                if str(error["loc"][0]) not in reported:
                    problems.append(RowProblem(line, field, _message(error, field)))
            continue
        cross = _cross_checks(row)
        problems.extend(RowProblem(line, field, message) for field, message in cross)
        if row.id_number in first_line:
            problems.append(
                RowProblem(
                    line, "id_number", f"the same person as line {first_line[row.id_number]}"
                )
            )
            continue
        first_line[row.id_number] = line
        if not cross:
            people.append((line, _account(row, region)))
    if problems:
        raise LedgerImportRejected(problems)
    return people


def read_people(
    path: Path, region: str, file_format: FileFormat | None = None
) -> list[tuple[int, PersonAccount]]:
    """`parse_people` on a file; the format from its suffix (.csv, .jsonl/.ndjson/.json) unless
    given."""
    chosen = _format_of(path, file_format)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise LedgerImportRejected(
            [RowProblem(line, "file", "is not UTF-8 text: save the file as UTF-8")]
        ) from exc
    return parse_people(text, region, chosen)


def format_people(accounts: Iterable[PersonAccount], file_format: FileFormat) -> str:
    """The file that imports ``accounts`` (the inverse of `parse_people`): for trials, tests and
    moving people from one ledger to another."""
    rows: list[dict[str, Any]] = [
        {
            "id_number": a.id_number,
            "name": a.name,
            "gender": a.gender.value,
            "insurance_type": a.insurance_type.value,
            "participation": a.participation,
            "months_paid": a.months_paid,
            "deemed_months": a.deemed_months,
            "periods": [p.to_json() for p in a.periods],
            "balance_fen": a.balance_fen,
            "arrears_fen": a.arrears_fen,
            "retiree": a.retiree,
            "enrolled": a.enrolled,
            "enrolment_start": a.enrolment_start,
        }
        for a in accounts
    ]
    if file_format == "jsonl":
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        periods = ";".join(
            f"{p['from_month']}..{p['to_month']}:{p['region']}:{p['insurance_type']}:{p['months']}"
            for p in row["periods"]
        )
        flags = {k: str(row[k]).lower() for k in ("retiree", "enrolled")}
        writer.writerow({**row, "periods": periods, **flags})
    return out.getvalue()


# --- writing ----------------------------------------------------------------------------------


def _differing(existing: PersonAccount, new: PersonAccount) -> list[str]:
    return [f.name for f in fields(PersonAccount) if getattr(existing, f.name) != getattr(new, f.name)]


async def _write(ledger: AccountBook, accounts: Sequence[PersonAccount]) -> None:
    if not accounts:
        return
    bulk = getattr(ledger, "put_accounts", None)
    if callable(bulk):
        await bulk(accounts)
        return
    for account in accounts:
        await ledger.put_account(account)


async def import_people(
    ledger: AccountBook, people: Iterable[tuple[int, PersonAccount]]
) -> ImportReport:
    """Add the people not yet in the books; leave identical ones; refuse (nothing written) if
    any differs from the person already there. ``people`` as `read_people` returns them."""
    rows = list(people)
    to_add: list[PersonAccount] = []
    unchanged = 0
    problems: list[RowProblem] = []
    for line, account in rows:
        existing = await ledger.lookup(account.id_number)
        if existing is None:
            to_add.append(account)
        elif existing == account:
            unchanged += 1
        else:
            columns = ", ".join(_differing(existing, account))
            problems.append(
                RowProblem(
                    line,
                    "id_number",
                    f"this person is already in the books with other values ({columns}); an "
                    "import only adds people: correct them in the core system",
                )
            )
    if problems:
        raise LedgerImportRejected(problems)
    await _write(ledger, to_add)
    return ImportReport(rows=len(rows), added=len(to_add), unchanged=unchanged)
