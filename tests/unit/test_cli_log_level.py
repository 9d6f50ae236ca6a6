"""``--log-level`` on the long-running commands reaches the logging configuration."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import agents.cli.agent_cmd
import agents.cli.demo_cmd
import agents.cli.reconcile_cmd
import broker.logging
from agents.cli import app
from broker.provider import BrokerUnavailable


@pytest.fixture
def levels(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []

    def record(level: str = "INFO", json: bool = True) -> None:
        seen.append(level)

    # Commands import configure_logging at module level or when they run (lazy CLI): patch both.
    for module in (agents.cli.agent_cmd, agents.cli.demo_cmd, agents.cli.reconcile_cmd):
        if hasattr(module, "configure_logging"):
            monkeypatch.setattr(module, "configure_logging", record)
    monkeypatch.setattr(broker.logging, "configure_logging", record)
    return seen


def test_agent_takes_log_level_default_info(levels: list[str]) -> None:
    # An invalid agency code stops the command right after logging is configured.
    assert CliRunner().invoke(app, ["agent", "--agency", "12"]).exit_code == 2
    assert CliRunner().invoke(app, ["agent", "--agency", "12", "--log-level", "debug"]).exit_code == 2
    assert levels == ["INFO", "DEBUG"]
    bad = CliRunner().invoke(app, ["agent", "--agency", "110000", "--log-level", "loud"])
    assert bad.exit_code == 2 and "--log-level" in bad.output


def test_reconcile_takes_log_level_default_info(levels: list[str], tmp_path: Path) -> None:
    args = ["reconcile", "--secrets-dir", str(tmp_path), "--directory", str(tmp_path / "none.json"),
            "--data-dir", str(tmp_path)]
    assert CliRunner().invoke(app, args).exit_code != 0
    assert CliRunner().invoke(app, [*args, "--log-level", "WARNING"]).exit_code != 0
    assert levels == ["INFO", "WARNING"]


def test_demo_takes_log_level_default_warning(
    levels: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable() -> None:
        raise BrokerUnavailable([("test", "no broker here", "none")])

    monkeypatch.setattr(agents.cli.demo_cmd, "acquire_broker", unavailable)
    assert CliRunner().invoke(app, ["demo"]).exit_code == 2
    assert CliRunner().invoke(app, ["demo", "--log-level", "info"]).exit_code == 2
    assert levels == ["WARNING", "INFO"]
