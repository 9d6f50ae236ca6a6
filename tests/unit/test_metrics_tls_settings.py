"""The metrics endpoint's TLS settings (issue 13): JIEXU_METRICS_TLS_CERT/_KEY/_CLIENT_CA read by
the agent and the reconciler, checked together, and JIEXU_REQUIRE_TLS refusing a plain endpoint
that other machines could reach, in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.reconcile.settings import ReconcilerSettings
from agents.service.metrics_tls import MetricsTlsError, check_plaintext, is_loopback, server_context
from agents.service.settings import AgentSettings
from broker.tls import PlaintextRefused

TLS_VARIABLES = ("CERT", "KEY", "CLIENT_CA")


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("JIEXU_METRICS_PORT", "JIEXU_METRICS_HOST", "JIEXU_REQUIRE_TLS"):
        monkeypatch.delenv(name, raising=False)
    for name in TLS_VARIABLES:
        monkeypatch.delenv(f"JIEXU_METRICS_TLS_{name}", raising=False)


def test_the_agent_and_the_reconciler_read_the_tls_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in TLS_VARIABLES:
        monkeypatch.setenv(f"JIEXU_METRICS_TLS_{name}", f"/etc/jiexu/metrics-{name.lower()}.pem")
    for metrics in (AgentSettings(agency="110000").metrics, ReconcilerSettings().metrics):
        assert metrics.tls
        assert metrics.tls_cert == Path("/etc/jiexu/metrics-cert.pem")
        assert metrics.tls_key == Path("/etc/jiexu/metrics-key.pem")
        assert metrics.tls_client_ca == Path("/etc/jiexu/metrics-client_ca.pem")


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ({"metrics_tls_cert": Path("c.pem")}, "go together"),
        ({"metrics_tls_key": Path("k.pem")}, "go together"),
        ({"metrics_tls_client_ca": Path("ca.pem")}, "set JIEXU_METRICS_TLS_CERT"),
    ],
)
def test_incomplete_tls_settings_are_refused(given: dict[str, Path], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        AgentSettings(agency="110000", **given)
    with pytest.raises(ValueError, match=problem):
        ReconcilerSettings(**given)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.53", True), ("::1", True), ("localhost", True),
     ("0.0.0.0", False), ("", False), ("10.1.2.3", False), ("::", False), ("metrics.local", False)],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_require_tls_refuses_plain_http_off_loopback_only() -> None:
    with pytest.raises(PlaintextRefused) as refused:
        check_plaintext("0.0.0.0", 9470, tls=False, required=True)
    message = str(refused.value)
    assert "\n" not in message and "JIEXU_METRICS_TLS_CERT" in message and "0.0.0.0:9470" in message
    check_plaintext("127.0.0.1", 9470, tls=False, required=True)  # a local scrape
    check_plaintext("0.0.0.0", 9470, tls=True, required=True)  # HTTPS
    check_plaintext("0.0.0.0", None, tls=False, required=True)  # no endpoint
    check_plaintext("0.0.0.0", 9470, tls=False, required=False)  # the default: allowed


def test_require_tls_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JIEXU_REQUIRE_TLS", "true")
    with pytest.raises(PlaintextRefused):
        check_plaintext("10.0.0.5", 9470, tls=False)


def test_files_that_do_not_load_name_the_setting(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.pem"
    with pytest.raises(MetricsTlsError, match="JIEXU_METRICS_TLS_CERT"):
        server_context(missing, missing)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n", encoding="ascii")
    with pytest.raises(MetricsTlsError, match="do not load"):
        server_context(garbage, garbage)


def test_the_agent_command_refuses_plain_metrics_under_require_tls_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from agents.cli import main

    monkeypatch.setenv("JIEXU_REQUIRE_TLS", "true")
    monkeypatch.setenv("JIEXU_METRICS_PORT", "9470")
    monkeypatch.setenv("JIEXU_METRICS_HOST", "0.0.0.0")
    monkeypatch.setattr(
        "sys.argv", ["jiexu", "agent", "--agency", "110000", "--data-dir", str(tmp_path)]
    )
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "metrics endpoint on 0.0.0.0:9470 would be plain HTTP" in err
