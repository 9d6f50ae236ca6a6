"""The agent reads JIEXU_METRICS_PORT / JIEXU_METRICS_HOST with the rest of its settings."""

from __future__ import annotations

import pytest

from agents.service.health import ALL_INTERFACES
from agents.service.settings import AgentSettings


def test_metrics_are_off_by_default_and_on_with_a_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JIEXU_METRICS_PORT", raising=False)
    monkeypatch.delenv("JIEXU_METRICS_HOST", raising=False)
    off = AgentSettings(agency="110000").metrics
    assert (off.port, off.host) == (None, ALL_INTERFACES)
    monkeypatch.setenv("JIEXU_METRICS_PORT", "9470")
    monkeypatch.setenv("JIEXU_METRICS_HOST", "127.0.0.1")
    on = AgentSettings(agency="110000").metrics
    assert (on.port, on.host) == (9470, "127.0.0.1")
    assert AgentSettings(agency="110000", metrics_port=0).metrics.port == 0
    with pytest.raises(ValueError):
        AgentSettings(agency="110000", metrics_port=70000)
