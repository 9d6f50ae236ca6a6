"""The metrics and health endpoints over HTTPS (issue 13): scraped with the CA, refused in plain
HTTP, and with a client CA only to a scraper presenting a certificate it issued; the image's health
check speaks HTTPS too."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from agents.service.health import HealthServer, MetricsSettings, Readiness, start_health_server
from agents.service.metrics import AgentMetrics
from tests.integration.tls_support import TestCA

pytestmark = pytest.mark.integration

A = "110000"
HEALTHCHECK = Path(__file__).resolve().parents[2] / "deploy" / "images" / "agent" / "healthcheck.py"


def _settings(tmp_path: Path, ca: TestCA, *, client_ca: bool = False) -> MetricsSettings:
    cert, key = ca.issue_server().write(tmp_path, "metrics")
    return MetricsSettings(
        port=0,
        host="127.0.0.1",
        tls_cert=cert,
        tls_key=key,
        tls_client_ca=ca.write_ca(tmp_path / "client_ca.pem") if client_ca else None,
    )


async def _start(settings: MetricsSettings) -> HealthServer:
    readiness = Readiness()
    readiness.add("broker", lambda: True)
    metrics = AgentMetrics(A)
    metrics.transport.message_handled("receipt", 0.01)
    server = await start_health_server(metrics.registry, readiness, settings)
    assert server is not None
    return server


async def test_metrics_are_scraped_over_https_with_the_ca_and_refused_in_plain_http(
    tmp_path: Path,
) -> None:
    ca = TestCA()
    server = await _start(_settings(tmp_path, ca))
    try:
        assert server.url.startswith("https://127.0.0.1:")
        async with httpx.AsyncClient(base_url=server.url, verify=ca.client_context()) as client:
            scraped = await client.get("/metrics")
            assert scraped.status_code == 200
            assert 'jiexu_messages_handled_total{agency="110000",type="receipt"} 1.0' in scraped.text
            assert (await client.get("/readyz")).status_code == 200
        plain = f"http://127.0.0.1:{server.port}/metrics"
        async with httpx.AsyncClient() as client:
            with pytest.raises(httpx.TransportError):
                await client.get(plain)
        async with httpx.AsyncClient(verify=TestCA("another CA").client_context()) as client:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.get(f"{server.url}/metrics")
    finally:
        await server.stop()


async def test_with_a_client_ca_only_a_scraper_with_its_certificate_gets_in(tmp_path: Path) -> None:
    ca = TestCA()
    server = await _start(_settings(tmp_path, ca, client_ca=True))
    try:
        client_dir = tmp_path / "prometheus"
        client_dir.mkdir()
        with_cert = ca.client_context(ca.issue_client("prometheus"), client_dir)
        async with httpx.AsyncClient(base_url=server.url, verify=with_cert) as client:
            assert (await client.get("/metrics")).status_code == 200
        async with httpx.AsyncClient(base_url=server.url, verify=ca.client_context()) as client:
            with pytest.raises(httpx.TransportError):
                await client.get("/metrics")
        stranger_dir = tmp_path / "stranger"
        stranger_dir.mkdir()
        other = TestCA("another CA")
        stranger = ca.client_context(other.issue_client("stranger"), stranger_dir)
        async with httpx.AsyncClient(base_url=server.url, verify=stranger) as client:
            with pytest.raises(httpx.TransportError):
                await client.get("/metrics")
    finally:
        await server.stop()


def _healthcheck(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("JIEXU_")}
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK)], env={**clean, **env}, capture_output=True, text=True,
        timeout=30, check=False,
    )


async def test_the_image_health_check_speaks_https(tmp_path: Path) -> None:
    import asyncio

    ca = TestCA()
    settings = _settings(tmp_path, ca, client_ca=True)
    server = await _start(settings)
    try:
        client_cert, client_key = ca.issue_client("healthcheck").write(tmp_path, "healthcheck")
        env = {
            "JIEXU_METRICS_PORT": str(server.port),
            "JIEXU_METRICS_TLS_CERT": str(settings.tls_cert),
            "JIEXU_METRICS_TLS_KEY": str(settings.tls_key),
            "JIEXU_METRICS_TLS_CLIENT_CA": str(settings.tls_client_ca),
            "JIEXU_HEALTHCHECK_TLS_CERT": str(client_cert),
            "JIEXU_HEALTHCHECK_TLS_KEY": str(client_key),
        }
        healthy = await asyncio.to_thread(_healthcheck, env)
        assert healthy.returncode == 0, healthy.stdout
        assert healthy.stdout.startswith("200 ")
        plain = await asyncio.to_thread(_healthcheck, {"JIEXU_METRICS_PORT": str(server.port)})
        assert plain.returncode == 1
    finally:
        await server.stop()


def test_a_server_context_requires_tls_1_2(tmp_path: Path) -> None:
    context = _settings(tmp_path, TestCA()).ssl_context()
    assert context is not None and context.minimum_version == ssl.TLSVersion.TLSv1_2


async def _served_certificate(server: HealthServer, ca: TestCA) -> bytes:
    """The DER certificate the server presents to a new connection."""
    import asyncio

    _reader, writer = await asyncio.open_connection(
        "127.0.0.1", server.port, ssl=ca.client_context(), server_hostname="127.0.0.1"
    )
    try:
        transport_ssl = writer.get_extra_info("ssl_object")
        der = transport_ssl.getpeercert(binary_form=True)
        assert der is not None
        return bytes(der)
    finally:
        writer.close()


def _der(cert_pem_path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert_pem_path.read_text(encoding="ascii"))


async def test_a_renewed_certificate_is_served_without_a_restart_and_a_bad_one_refused(
    tmp_path: Path,
) -> None:
    """The files replaced on disk (as cert-manager renews them): after two checks (the change has
    to stay put for one), new connections get the new certificate; a certificate with another
    key's file is refused, and the one in force stays."""
    from structlog.testing import capture_logs

    ca = TestCA()
    settings = _settings(tmp_path, ca).model_copy(update={"tls_check_s": 0.0})
    server = await _start(settings)
    assert settings.tls_cert is not None and settings.tls_key is not None
    reloader = server.tls_reloader
    assert reloader is not None
    try:
        first = _der(settings.tls_cert)
        assert await _served_certificate(server, ca) == first
        renewed = tmp_path / "renewed"
        renewed.mkdir()
        cert, key = ca.issue_server().write(renewed, "metrics")
        cert.replace(settings.tls_cert)
        key.replace(settings.tls_key)
        assert reloader.check() is False  # seen changing: looked at again next time
        assert reloader.check() is True
        second = _der(settings.tls_cert)
        assert second != first
        assert await _served_certificate(server, ca) == second
        async with httpx.AsyncClient(base_url=server.url, verify=ca.client_context()) as client:
            assert (await client.get("/metrics")).status_code == 200

        # A certificate whose key file is another one's: refused, the renewed pair stays.
        wrong_cert, _ = ca.issue_server().write(renewed, "wrong")
        wrong_cert.replace(settings.tls_cert)
        with capture_logs() as logs:
            assert reloader.check() is False
            assert reloader.check() is False
        assert [e["event"] for e in logs] == ["metrics_tls_reload_refused"]
        assert reloader.refusals == 1 and reloader.reloads == 1
        assert await _served_certificate(server, ca) == second
    finally:
        await server.stop()


async def test_the_server_checks_its_certificate_files_by_itself(tmp_path: Path) -> None:
    """With JIEXU_METRICS_TLS_CHECK_S the running server follows the files on its own."""
    from tests.integration.transport_support import eventually

    ca = TestCA()
    settings = _settings(tmp_path, ca).model_copy(update={"tls_check_s": 0.05})
    server = await _start(settings)
    assert settings.tls_cert is not None and settings.tls_key is not None
    try:
        renewed = tmp_path / "renewed"
        renewed.mkdir()
        cert, key = ca.issue_server().write(renewed, "metrics")
        cert.replace(settings.tls_cert)
        key.replace(settings.tls_key)
        wanted = _der(settings.tls_cert)

        async def serving_the_new_one() -> bool:
            return await _served_certificate(server, ca) == wanted

        await eventually(serving_the_new_one, "the renewed certificate served")
    finally:
        await server.stop()
    assert server.tls_reloader is not None and server.tls_reloader.reloads == 1
