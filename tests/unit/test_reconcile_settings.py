"""`ReconcilerSettings`: ``JIEXU_*`` variables like the agent's, the report where `Paths` puts it."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.domain.deadlines import Regime
from agents.reconcile.settings import ReconcilerSettings
from agents.service.paths import Paths


def test_settings_come_from_jiexu_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JIEXU_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("JIEXU_REGIME", "2016")
    monkeypatch.setenv("JIEXU_RECONCILER_AMQP_URL", "amqp://r:p@broker:5672/v")
    monkeypatch.setenv("JIEXU_RETRY_DELAYS_MS", "[100, 300]")  # the agents' form: a JSON array
    settings = ReconcilerSettings()
    assert settings.regime is Regime.R2016
    assert settings.reconciler_amqp_url == "amqp://r:p@broker:5672/v"
    assert settings.retry_delays_ms == (100, 300)
    assert settings.report_path == Paths(data_dir=tmp_path / "data").report()


def test_retry_delays_also_read_as_the_command_line_writes_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JIEXU_RETRY_DELAYS_MS", "1000,5000")
    assert ReconcilerSettings().retry_delays_ms == (1000, 5000)


def test_the_signing_key_is_read_from_keys_dir_else_secrets_dir(tmp_path: Path) -> None:
    assert ReconcilerSettings(secrets_dir=tmp_path / "s").key_dir == tmp_path / "s"
    assert ReconcilerSettings(secrets_dir=tmp_path / "s", keys_dir=tmp_path / "k").key_dir == tmp_path / "k"


def test_the_metrics_port_is_the_reconcilers_own_when_set_else_the_shared_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("JIEXU_METRICS_PORT", "JIEXU_RECONCILER_METRICS_PORT", "JIEXU_METRICS_HOST"):
        monkeypatch.delenv(name, raising=False)
    assert ReconcilerSettings().metrics.port is None  # off by default
    monkeypatch.setenv("JIEXU_METRICS_PORT", "9470")
    monkeypatch.setenv("JIEXU_METRICS_HOST", "127.0.0.1")
    shared = ReconcilerSettings().metrics
    assert (shared.port, shared.host) == (9470, "127.0.0.1")
    # An agent on the same host reads JIEXU_METRICS_PORT too: the reconciler's own port wins.
    monkeypatch.setenv("JIEXU_RECONCILER_METRICS_PORT", "9471")
    assert ReconcilerSettings().metrics.port == 9471
    assert ReconcilerSettings(reconciler_metrics_port=0).metrics.port == 0
