"""`jiexu case certificate` and `jiexu certificate verify` on a certificate the service issued.

The commands are mounted here as `agents.cli` mounts them (see `agents.cli.certificate_cmd`).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from agents.cli.certificate_cmd import case_certificate_command, certificate_app
from agents.domain.case import case_columns
from agents.domain.certificate import ParticipationCertificate
from agents.service.certificates import certificate_to_json
from agents.service.paths import Paths
from agents.store.base import CaseRecord
from agents.store.sqlite import SqliteStore
from broker.directory import AgencyDirectory
from broker.directory_trust import install_operator_key, sign_directory
from broker.signing import generate_private_key
from tests.unit.test_case_continuity import OUT, transfer

OPERATOR = generate_private_key()

app = typer.Typer()
case_app = typer.Typer()
case_app.command("certificate")(case_certificate_command)
app.add_typer(case_app, name="case")
app.add_typer(certificate_app, name="certificate")

runner = CliRunner()


@pytest.fixture(autouse=True)
def _sqlite_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JIEXU_DATABASE_URL", raising=False)


@pytest.fixture(scope="module")
def issued() -> tuple[ParticipationCertificate, AgencyDirectory, Any]:
    """A certificate the outgoing service issued, the directory, and the outgoing case."""
    _, _, outgoing, case_id = transfer("2026-05")
    case = outgoing.case(case_id)
    assert case.certificate is not None
    return case.certificate, outgoing.service.directory, case


def _write_directory(path: Path, directory: AgencyDirectory) -> Path:
    entries = [directory.get(code).model_dump(mode="json") for code in (OUT, "440300") if code in directory]
    path.write_text(json.dumps({"agencies": entries}, ensure_ascii=False), encoding="utf-8")
    # Signed by the operator, whose key the verifying side holds in its secrets directory.
    sign_directory(path, OPERATOR)
    install_operator_key(path.parent / "secrets", OPERATOR)
    return path


def _verify(tmp_path: Path, directory: AgencyDirectory, document: str, *extra: str) -> Any:
    cert = tmp_path / "cert.json"
    cert.write_text(document, encoding="utf-8")
    known = _write_directory(tmp_path / "directory.json", directory)
    return runner.invoke(
        app,
        ["certificate", "verify", str(cert), "--directory", str(known), *extra],
        env={"JIEXU_SECRETS_DIR": str(tmp_path / "secrets")},
    )


def test_an_issued_certificate_verifies_with_its_printed_check_code(
    tmp_path: Path, issued: tuple[ParticipationCertificate, AgencyDirectory, Any]
) -> None:
    certificate, directory, _ = issued
    assert certificate.check_code is not None
    typed = certificate.check_code.replace("-", " ").lower()
    result = _verify(tmp_path, directory, certificate_to_json(certificate), "--check-code", typed)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"valid: certificate {certificate.certificate_number}")
    assert result.output.count("\n") == 1


def _tampered(certificate: ParticipationCertificate, **changes: Any) -> str:
    data = json.loads(certificate_to_json(certificate))
    for dotted, value in changes.items():
        target = data
        *path, last = dotted.split("__")
        for part in path:
            target = target[part]
        target[last] = value
    return json.dumps(data, ensure_ascii=False)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        # One fen more, in figures and in words alike: only the signature can tell.
        ({"balance_fen": 1_234_568, "balance_in_words": "壹万贰仟叁佰肆拾伍元陆角捌分"}, "bad_signature"),
        ({"holder__name": "李娜"}, "bad_signature"),
        ({"months_paid": 121}, "invalid_certificate"),  # no longer adds up with its periods
        ({"balance_fen": 1}, "invalid_certificate"),  # figures and words disagree
        ({"signature": None, "check_code": None}, "unsigned"),
        ({"issuer__code": "110000"}, "unknown_issuer"),
    ],
)
def test_a_tampered_certificate_is_refused_in_one_line_with_exit_2(
    tmp_path: Path,
    issued: tuple[ParticipationCertificate, AgencyDirectory, Any],
    changes: dict[str, Any],
    reason: str,
) -> None:
    certificate, directory, _ = issued
    result = _verify(tmp_path, directory, _tampered(certificate, **changes))
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"refused ({reason}): ")
    assert result.output.count("\n") == 1
    assert certificate.holder.id_number not in result.output


def test_a_check_code_that_is_not_the_certificates_is_refused(
    tmp_path: Path, issued: tuple[ParticipationCertificate, AgencyDirectory, Any]
) -> None:
    certificate, directory, _ = issued
    result = _verify(
        tmp_path, directory, certificate_to_json(certificate), "--check-code", "0000-0000-0000"
    )
    assert result.exit_code == 2
    assert result.output.startswith("refused (check_code_mismatch): ")


def test_an_expired_certificate_is_refused_on_the_day_given(
    tmp_path: Path, issued: tuple[ParticipationCertificate, AgencyDirectory, Any]
) -> None:
    certificate, directory, _ = issued
    late = certificate.register_by.replace(day=certificate.register_by.day + 1)
    ok = _verify(tmp_path, directory, certificate_to_json(certificate), "--on", str(certificate.register_by))
    assert ok.exit_code == 0, ok.output
    result = _verify(tmp_path, directory, certificate_to_json(certificate), "--on", late.isoformat())
    assert result.exit_code == 2
    assert result.output.startswith("refused (expired): ")


def test_a_missing_file_is_not_a_refusal(tmp_path: Path) -> None:
    result = runner.invoke(app, ["certificate", "verify", str(tmp_path / "none.json")])
    assert result.exit_code == 1
    assert result.output.startswith("cannot read ")


def _store_case(data_dir: Path, case: Any) -> None:
    async def save() -> None:
        store = await SqliteStore.open(Paths(data_dir=data_dir).store(OUT))
        try:
            now = datetime.now(UTC)
            record = CaseRecord(**case_columns(case), created_at=now, updated_at=now, version=0)
            async with store.transaction() as tx:
                await tx.save_case(record, None)
        finally:
            await store.close()

    asyncio.run(save())


def test_case_certificate_writes_the_pdf_and_the_json_that_verifies(
    tmp_path: Path, issued: tuple[ParticipationCertificate, AgencyDirectory, Any]
) -> None:
    certificate, directory, case = issued
    data_dir = tmp_path / "data"
    _store_case(data_dir, case)
    out = tmp_path / "out"

    result = runner.invoke(
        app,
        ["case", "certificate", str(case.case_id), "--agency", OUT, "--data-dir", str(data_dir),
         "--out", str(out)],
    )

    assert result.exit_code == 0, result.output
    pdf = out / f"{certificate.certificate_number}.pdf"
    written = out / f"{certificate.certificate_number}.json"
    assert f"pdf  {pdf}" in result.output and f"json {written}" in result.output
    assert pdf.read_bytes().startswith(b"%PDF-")
    verified = _verify(tmp_path, directory, written.read_text(encoding="utf-8"))
    assert verified.exit_code == 0, verified.output


def test_case_certificate_for_a_case_without_one_exits_1(tmp_path: Path) -> None:
    _, receiving, _, case_id = transfer("2026-01")
    data_dir = tmp_path / "data"
    case = receiving.case(case_id)
    _store_case(data_dir, case.model_copy(update={"own_code": OUT}))
    result = runner.invoke(
        app, ["case", "certificate", str(case_id), "--agency", OUT, "--data-dir", str(data_dir)]
    )
    assert result.exit_code == 1
    assert "holds no certificate" in result.output


def test_case_show_prints_the_continuity_and_the_certificate(
    tmp_path: Path, issued: tuple[ParticipationCertificate, AgencyDirectory, Any]
) -> None:
    from agents.cli.agent_cmd import case_app as shipped_case_app

    certificate, _, case = issued
    data_dir = tmp_path / "data"
    _store_case(data_dir, case)
    shown = typer.Typer()
    shown.add_typer(shipped_case_app, name="case")

    text = runner.invoke(
        shown, ["case", "show", str(case.case_id), "--agency", OUT, "--data-dir", str(data_dir)]
    )
    as_json = runner.invoke(
        shown,
        ["case", "show", str(case.case_id), "--agency", OUT, "--data-dir", str(data_dir), "--json"],
    )

    assert text.exit_code == 0, text.output
    assert (
        "  continuity broken: gap 4 months (ended 2025-12, enrolled 2026-05), waiting 6 months, "
        "benefits from 2026-11"
    ) in text.output
    line = f"  certificate {certificate.certificate_number} check code {certificate.check_code}"
    assert line in text.output
    summary = json.loads(as_json.output)
    assert summary["continuity"]["outcome"] == "broken"
    assert summary["certificate"]["register_by"] == certificate.register_by.isoformat()
    assert certificate.holder.id_number not in as_json.output
