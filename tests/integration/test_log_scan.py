"""The log scanner finds raw personal data and lets masked forms pass."""

from __future__ import annotations

from pathlib import Path

from schemas.pii import mask_value
from tests.integration.log_scan import find_pii

ID = "11010519491231002X"


def test_raw_values_are_found_and_masked_ones_pass(tmp_path: Path) -> None:
    log = tmp_path / "agent.log"
    raw = [
        f"id {ID}",
        "id 110105 19491231 002X",
        "card 6222021234567890123",
        "name 张三丰 here",
    ]
    safe = [mask_value(line) for line in raw[:3]] + [
        "case 6f1c1a52-4a43-4a4e-9d53-0b1f64f0a002 at 2026-11-29T20:00:00Z",
        "timestamp=20261129200000123",
        "amount_fen=12345",
        # a certificate number whose case id starts with decimal digits reads like an ID number
        "certificate_issued number=PZ-360400-20261130-1005ABCD",
    ]
    log.write_text("\n".join(raw + safe) + "\n", encoding="utf-8")
    findings = find_pii([log], names=["张三丰"])
    assert sorted({f.line for f in findings}) == [1, 2, 3, 4]
    assert all(ID not in str(f) for f in findings), "the report does not repeat what it found"
