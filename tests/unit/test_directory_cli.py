"""`jiexu directory init|add|show` make a directory the agents load, and `apply` refuses an
outgoing agency that cannot read the contact letter before any case is written."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from agents.cli import app
from broker.directory import AgencyDirectory

JIUJIANG, DONGGUAN, FUTURE = "360400", "441900", "110000"


def _add(directory: Path, secrets: Path, code: str, *extra: str) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["keys", "generate", "--agency", code, "--out", str(secrets)]).exit_code == 0
    result = runner.invoke(
        app,
        [
            "directory",
            "add",
            "--directory",
            str(directory),
            "--code",
            code,
            "--name",
            f"{code}医保中心",
            "--public-key",
            str(secrets / f"{code}.ed25519.pub"),
            "--bank-name",
            "中国建设银行",
            "--bank-code",
            "105100000017",
            "--account-name",
            f"{code}医保中心",
            "--account-number",
            "6217000010001234567",
            *extra,
        ],
    )
    assert result.exit_code == 0, result.output


def test_a_directory_made_on_the_command_line_loads_and_refuses_what_it_cannot_serve(tmp_path: Path) -> None:
    runner = CliRunner()
    directory, secrets, data = tmp_path / "directory.json", tmp_path / "secrets", tmp_path / "data"
    assert runner.invoke(app, ["directory", "init", "--directory", str(directory)]).exit_code == 0
    again = runner.invoke(app, ["directory", "init", "--directory", str(directory)])
    assert again.exit_code == 2 and again.output.startswith("error: ") and "--force" in again.output

    _add(directory, secrets, JIUJIANG)
    _add(directory, secrets, DONGGUAN, "--versions", "contact_letter=1")
    _add(directory, secrets, FUTURE, "--versions", "contact_letter=3")
    twice = runner.invoke(
        app,
        [
            "directory",
            "add",
            "--directory",
            str(directory),
            "--code",
            DONGGUAN,
            "--name",
            "x",
            "--public-key",
            "x",
            "--bank-name",
            "x",
            "--bank-code",
            "x",
            "--account-name",
            "x",
            "--account-number",
            "123456",
        ],
    )
    assert twice.exit_code == 2 and "--replace" in twice.output

    loaded = AgencyDirectory.load(directory)
    assert set(loaded.codes) == {FUTURE, JIUJIANG, DONGGUAN}
    assert loaded.supported_versions(DONGGUAN, "contact_letter") == (1,)
    assert loaded.supported_versions(JIUJIANG, "rejection") == (1, 2)

    shown = runner.invoke(app, ["directory", "show", "--directory", str(directory)])
    assert shown.exit_code == 0 and "3 agencies" in shown.output
    as_json = runner.invoke(app, ["directory", "show", "--directory", str(directory), "--json"])
    assert {a["code"] for a in json.loads(as_json.stdout)["agencies"]} == {FUTURE, JIUJIANG, DONGGUAN}

    # The operator signs the directory; the agency holds the operator's public key.
    made = runner.invoke(app, ["keys", "generate", "--agency", "operator", "--out", str(secrets)])
    assert made.exit_code == 0, made.output
    signed = runner.invoke(
        app, ["keys", "sign-directory", str(directory), "--key", str(secrets / "operator.ed25519.pem")]
    )
    assert signed.exit_code == 0, signed.output
    person = {"JIEXU_ID_NUMBER": "11010519491231002X", "JIEXU_NAME": "张三"}
    apply = [
        "apply",
        "--agency",
        JIUJIANG,
        "--gender",
        "female",
        "--directory",
        str(directory),
        "--secrets-dir",
        str(secrets),
        "--data-dir",
        str(data),
    ]
    refused = runner.invoke(app, [*apply, "--from-region", FUTURE], env=person)
    assert refused.exit_code == 2, refused.output
    assert refused.output.startswith("error: agency 110000 declares contact_letter versions [3]")
    assert "11010519491231002X" not in refused.output
    with sqlite3.connect(data / JIUJIANG / "store.db") as db:
        assert db.execute("SELECT count(*) FROM cases").fetchone() == (0,)
