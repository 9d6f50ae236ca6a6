"""TLS kept from the URL to every process (issue 13 item 4): the query string, the scheme and the
port survive the secrets file; JIEXU_REQUIRE_TLS makes plaintext a one-line configuration error."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agents.reconcile.settings import ReconcilerSettings
from agents.service.bootstrap import agency_amqp_url
from agents.service.settings import AgentSettings
from broker.management import ManagementClient
from broker.provider import BrokerEndpoint
from broker.tls import PlaintextRefused, check_amqp_url, check_http_url, login_url, management_tls
from broker.topology import AgencyCredential, write_credentials
from tests.integration.tls_support import TestCA

TLS_QUERY = "cafile=%2Fetc%2Fjiexu%2Fca.pem&certfile=%2Fetc%2Fjiexu%2Fc.pem&keyfile=%2Fetc%2Fjiexu%2Fc.key"
ADMIN_URL = f"amqps://admin:secret@broker.example:5671/?{TLS_QUERY}"


def test_login_url_keeps_scheme_hosts_ports_and_the_tls_query() -> None:
    url = login_url(ADMIN_URL, "agency-110000", "p@ss/w:rd", "jiexu")
    assert url == f"amqps://agency-110000:p%40ss%2Fw%3Ard@broker.example:5671/jiexu?{TLS_QUERY}"
    # No port: the scheme's, never "host:None"; a cluster's host list is kept as written.
    assert login_url("amqps://b.example/", "u", "p", "/") == "amqps://u:p@b.example:5671/%2F"
    assert login_url("amqp://b.example", "u", "p", "v") == "amqp://u:p@b.example:5672/v"
    assert (
        login_url("amqps://a:b@h1:5671,h2,[::1]/x?heartbeat=5", "u", "p", "v")
        == "amqps://u:p@h1:5671,h2:5671,[::1]:5671/v?heartbeat=5"
    )


def test_topology_apply_writes_the_amqps_url_with_its_query_into_the_secrets_file(
    tmp_path: Path,
) -> None:
    endpoint = BrokerEndpoint.from_url(ADMIN_URL, None, "JIEXU_AMQP_URL")
    assert endpoint.management_url == "https://broker.example:15671"  # https by default over amqps
    cred = AgencyCredential("110000", "agency-110000", "pw")
    url = endpoint.amqp_url(vhost="jiexu", username=cred.username, password=cred.password)
    assert url == f"amqps://agency-110000:pw@broker.example:5671/jiexu?{TLS_QUERY}"
    write_credentials(tmp_path / "secrets", {"110000": cred}, "jiexu", {"110000": url})
    settings = AgentSettings(agency="110000", secrets_dir=tmp_path / "secrets")
    # The agent's URL from the secrets file alone, and with JIEXU_AMQP_URL naming the broker.
    assert agency_amqp_url(settings) == url
    moved = settings.model_copy(update={"amqp_url": "amqps://x:y@other.example:6671/?cafile=%2Fca"})
    assert agency_amqp_url(moved) == "amqps://agency-110000:pw@other.example:6671/jiexu?cafile=%2Fca"


def test_the_reconciler_keeps_the_tls_url_of_its_secrets_file(tmp_path: Path) -> None:
    from agents.reconcile.process import reconciler_amqp_url

    endpoint = BrokerEndpoint.from_url(ADMIN_URL, None, "JIEXU_AMQP_URL")
    cred = AgencyCredential("000000", "agency-000000", "pw")
    url = endpoint.amqp_url(vhost="v", username=cred.username, password=cred.password)
    write_credentials(tmp_path, {"000000": cred}, "v", {"000000": url})
    assert reconciler_amqp_url(ReconcilerSettings(secrets_dir=tmp_path)) == url
    # Without a URL in the file: the broker of JIEXU_AMQP_URL, its TLS query kept.
    write_credentials(tmp_path, {"000000": cred}, "v")
    settings = ReconcilerSettings(secrets_dir=tmp_path, amqp_url=ADMIN_URL)
    assert reconciler_amqp_url(settings) == f"amqps://agency-000000:pw@broker.example:5671/v?{TLS_QUERY}"


@pytest.mark.parametrize(
    "url",
    ["amqp://u:p@broker.example:5672/", "amqps://u:p@broker.example:5671/?no_verify_ssl=1"],
)
def test_require_tls_refuses_plaintext_and_unverified_amqp(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert check_amqp_url(url) == url  # off by default (tests, the demo)
    monkeypatch.setenv("JIEXU_REQUIRE_TLS", "true")
    with pytest.raises(PlaintextRefused) as caught:
        check_amqp_url(url, "JIEXU_AMQP_URL")
    assert "\n" not in str(caught.value) and ":p@" not in str(caught.value)  # one line, no password
    with pytest.raises(PlaintextRefused):
        BrokerEndpoint.from_url(url, None, "JIEXU_AMQP_URL")
    assert check_amqp_url(ADMIN_URL) == ADMIN_URL


def test_require_tls_refuses_an_http_management_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JIEXU_REQUIRE_TLS", "1")
    with pytest.raises(PlaintextRefused, match="not https"):
        BrokerEndpoint.from_url(ADMIN_URL, "http://broker.example:15672", "JIEXU_AMQP_URL")
    with pytest.raises(PlaintextRefused):
        check_http_url("https://a:15671,http://b:15672")
    assert check_http_url("https://a:15671") == "https://a:15671"


def test_the_agent_refuses_plaintext_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from agents.cli import main

    cred = AgencyCredential("110000", "agency-110000", "pw")
    write_credentials(tmp_path, {"110000": cred}, "v", {"110000": "amqp://agency-110000:pw@h:5672/v"})
    settings = AgentSettings(agency="110000", secrets_dir=tmp_path)
    monkeypatch.setenv("JIEXU_REQUIRE_TLS", "true")
    with pytest.raises(PlaintextRefused, match="plaintext"):
        agency_amqp_url(settings)
    monkeypatch.setenv("JIEXU_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    monkeypatch.setattr("sys.argv", ["jiexu", "topology", "apply", "--agency", "110000"])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "JIEXU_REQUIRE_TLS is on" in err and "guest@" not in err, err


def test_topology_apply_with_plaintext_under_require_tls_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    from agents.cli.topology_cmd import topology_app

    result = CliRunner().invoke(
        topology_app,
        ["apply", "--agency", "110000"],
        env={"JIEXU_REQUIRE_TLS": "true", "JIEXU_AMQP_URL": "amqp://a:b@127.0.0.1:5672/"},
    )
    assert result.exit_code == 2
    assert "plaintext and JIEXU_REQUIRE_TLS is on" in result.output


def test_management_tls_takes_the_ca_from_its_setting_or_the_amqp_url(tmp_path: Path) -> None:
    ca = TestCA()
    cafile = ca.write_ca(tmp_path / "ca.pem")
    assert management_tls("amqps://h/", env={}) is True  # the system's CAs
    context = management_tls(f"amqps://h/?cafile={cafile}", env={})
    assert isinstance(context, ssl.SSLContext) and context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert isinstance(management_tls(None, env={"JIEXU_MANAGEMENT_CAFILE": str(cafile)}), ssl.SSLContext)
    with pytest.raises(ValueError, match=r"missing\.pem"):
        management_tls(None, env={"JIEXU_MANAGEMENT_CAFILE": str(tmp_path / "missing.pem")})
    with ManagementClient("https://h:15671", "u", "p", verify=context) as api:
        assert api.base_url == "https://h:15671"
