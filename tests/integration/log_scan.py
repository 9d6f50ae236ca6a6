"""Scan captured agent logs for personal data that escaped masking (issue 13).

`find_pii` reads log files (the stdout/stderr an agent process wrote, see `agent_processes`) and
reports every raw 公民身份号码 (18 characters passing the GB 11643 check, also written with spaces
or hyphens), every run of 13 or more digits (account and card numbers), and every known name and
account number of the people the test moved. Masked forms (``110105********X``, ``6222****0123``,
``张**``) do not match. UUIDs and timestamps are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from schemas.common import citizen_id_check_char

__all__ = ["Finding", "assert_no_pii", "find_pii"]

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# A participation certificate's number (PZ-region-date-first 8 hex digits of the case id) can read
# as an ID number when the hex digits happen to be decimal and the check digit fits (about 1 in 80).
_CERTIFICATE = re.compile(r"PZ-[0-9]{6}-[0-9]{8}-[0-9A-F]{8}")
_ID = re.compile(r"(?<![0-9])([1-9](?:[ -]?[0-9]){16}[ -]?[0-9Xx])(?![0-9])")
_DIGIT_RUN = re.compile(r"(?<![0-9])[0-9]{13,}(?![0-9])")
# Digits that are times, not accounts: ISO dates and compact timestamps in log lines.
_TIMESTAMPISH = re.compile(r"^20[0-9]{2}(?:0[1-9]|1[0-2])")


@dataclass(frozen=True)
class Finding:
    path: Path
    line: int
    kind: str
    excerpt: str

    def __str__(self) -> str:
        return f"{self.path.name}:{self.line}: {self.kind}: {self.excerpt}"


def _is_id(candidate: str) -> bool:
    compact = re.sub(r"[ -]", "", candidate).upper()
    return len(compact) == 18 and citizen_id_check_char(compact[:17]) == compact[17]


def find_pii(
    paths: Iterable[Path], *, names: Iterable[str] = (), numbers: Iterable[str] = ()
) -> list[Finding]:
    """Every raw ID number, long digit run, known name or known number in the files."""
    names = [n for n in names if n]
    numbers = [n for n in numbers if n]
    found: list[Finding] = []
    for path in paths:
        text = path.read_text(encoding="utf-8", errors="replace")
        for index, line in enumerate(text.splitlines(), start=1):
            scrubbed = _CERTIFICATE.sub("<certificate>", _UUID.sub("<uuid>", line))
            for match in _ID.finditer(scrubbed):
                if _is_id(match.group(1)):
                    found.append(Finding(path, index, "id_number", _around(scrubbed, match.start())))
            for match in _DIGIT_RUN.finditer(scrubbed):
                if not _TIMESTAMPISH.match(match.group(0)):
                    found.append(Finding(path, index, "digit_run", _around(scrubbed, match.start())))
            for name in names:
                if name in scrubbed:
                    found.append(Finding(path, index, "name", _around(scrubbed, scrubbed.index(name))))
            for number in numbers:
                if number in scrubbed:
                    found.append(Finding(path, index, "number", _around(scrubbed, scrubbed.index(number))))
    return found


def _around(line: str, at: int) -> str:
    # The finding itself is personal data: show where it is, not what it is.
    return f"column {at + 1} of {len(line)}: {line[max(0, at - 40):at]}<...>"


def assert_no_pii(
    paths: Iterable[Path], *, names: Iterable[str] = (), numbers: Iterable[str] = ()
) -> None:
    paths = list(paths)
    assert paths, "no log files to scan"
    findings = find_pii(paths, names=names, numbers=numbers)
    assert not findings, "personal data in agent logs:\n" + "\n".join(map(str, findings[:20]))
