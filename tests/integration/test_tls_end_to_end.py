"""TLS end to end (issue 13 item 4), on the offline broker image with a TLS listener made from a
test CA, plaintext listeners off and client certificates required.

``jiexu topology apply``'s code path (`provision` over `BrokerEndpoint.from_url` of an ``amqps://``
URL carrying ``cafile``/``certfile``/``keyfile``) provisions through the management API over
``https://``; the secrets files keep the ``amqps://`` URL with its query; two agents started from
those files with ``JIEXU_REQUIRE_TLS=true`` complete a transfer. A client trusting another CA is
refused by both the AMQP and the management listener, and so is one without a client certificate.

Skips only when no Docker engine can run; a missing image is a failure naming the build script.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

import aiormq
import httpx
import pytest

from agents.service.bootstrap import agency_amqp_url
from agents.tools.provision import AgencyProfile
from broker.connection import connect
from broker.management import ManagementClient, ManagementError
from broker.provider import BrokerContainer, BrokerEndpoint, start_broker_container
from broker.pytest_plugin import TestVhost
from broker.topology import load_agency_secret
from tests.integration.agent_world import agent_world
from tests.integration.tls_support import TestCA

pytestmark = pytest.mark.integration

IMAGE = "jiexu/rabbitmq:offline"
READY_S = 120.0
DONGGUAN, JIUJIANG = "441900", "360400"
REFUSED = (aiormq.exceptions.AMQPError, OSError)  # ssl.SSLError is an OSError


def _docker_or_skip() -> None:
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception as exc:
        pytest.skip(
            f"no Docker engine can run here ({type(exc).__name__}: {str(exc)[:120]}); start one "
            "(`dockerd &`) to test TLS against the offline broker image"
        )
    try:
        client.images.get(IMAGE)
    except Exception:
        pytest.fail(f"image {IMAGE} is not built: run deploy/images/rabbitmq/build.sh")


@dataclass
class TlsBroker:
    container: BrokerContainer
    ca: TestCA
    files: Path

    @property
    def query(self) -> str:
        return urlencode(
            {
                "cafile": str(self.files / "ca.pem"),
                "certfile": str(self.files / "client_certificate.pem"),
                "keyfile": str(self.files / "client_key.pem"),
            }
        )

    @property
    def management_url(self) -> str:
        return f"https://127.0.0.1:{self.container.port(15671)}"

    def admin_url(self, query: str | None = None) -> str:
        c = self.container
        return (
            f"amqps://{quote(c.username, safe='')}:{quote(c.password, safe='')}"
            f"@127.0.0.1:{c.port(5671)}/?{self.query if query is None else query}"
        )


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    _docker_or_skip()
    ca = TestCA()
    server = ca.write_server_dir(tmp_path_factory.mktemp("server-tls"))
    files = tmp_path_factory.mktemp("client-tls")
    ca.write_ca(files / "ca.pem")
    ca.issue_client("jiexu-client").write(files, "client")
    container = start_broker_container(
        IMAGE,
        tls_dir=server,
        environment={"JIEXU_RABBITMQ_PLAINTEXT": "false", "JIEXU_RABBITMQ_TLS_CLIENT_CERT": "required"},
    )
    broker = TlsBroker(container, ca, files)
    try:
        context = ssl.create_default_context(cafile=str(files / "ca.pem"))
        context.load_cert_chain(files / "client_certificate.pem", files / "client_key.pem")
        deadline = time.monotonic() + READY_S
        while True:
            if dead := container.dead():
                pytest.fail(f"TLS broker: {dead}")
            try:
                answer = httpx.get(
                    f"{broker.management_url}/api/overview",
                    auth=(container.username, container.password),
                    verify=context,
                    timeout=5,
                )
                if answer.status_code == 200:
                    break
            except (OSError, httpx.HTTPError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"TLS broker not ready in {READY_S:.0f} s:\n{container.logs(tail=30)}")
            time.sleep(0.5)
        yield broker
    finally:
        container.stop()


async def test_an_agent_completes_a_transfer_over_amqps(
    tls_broker: TlsBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JIEXU_REQUIRE_TLS", "true")  # plaintext anywhere would be refused
    endpoint = BrokerEndpoint.from_url(
        tls_broker.admin_url(), tls_broker.management_url, "JIEXU_AMQP_URL"
    )
    vhost = f"tls-{uuid.uuid4().hex[:8]}"
    with endpoint.management() as api:  # https, the test CA, the client certificate
        api.create_vhost(vhost)
    async with agent_world(
        TestVhost(vhost, endpoint), tmp_path, [AgencyProfile(DONGGUAN), AgencyProfile(JIUJIANG)]
    ) as world:
        # What topology apply wrote: amqps, the TLS port, the CA and the client certificate.
        secret = load_agency_secret(world.provisioned.paths.credentials(JIUJIANG))
        assert secret["amqp_url"].startswith("amqps://")
        assert f":{tls_broker.container.port(5671)}/{vhost}?" in secret["amqp_url"]
        assert tls_broker.query in secret["amqp_url"]
        assert agency_amqp_url(world.provisioned.settings(JIUJIANG)).endswith(f"?{tls_broker.query}")

        await world.start(DONGGUAN)
        await world.start(JIUJIANG)
        out, _ = await world.mover(
            DONGGUAN, JIUJIANG, zero_balance=False, arrears=False, retiree=False, insurance_type="310"
        )
        case_id = await world.apply(JIUJIANG, DONGGUAN, out)
        assert await world.wait_terminal(JIUJIANG, case_id) == "completed"
        assert await world.wait_terminal(DONGGUAN, case_id) == "completed"
        statement = await world.agents[JIUJIANG].service.ledger.statement(case_id)
        assert statement.amount_credited_fen == out.balance_fen > 0

        # jiexu doctor checks the broker over amqps and the management API over https.
        from agents.cli.doctor_cmd import run_checks

        settings = world.provisioned.settings(JIUJIANG)
        checks = {c.name: c for c in await run_checks(settings, tls_broker.management_url)}
        assert checks["broker"].ok and checks["management API"].ok, checks
        assert checks["directory"].ok, checks  # the signed directory

        # The broker lists the agent's connection as TLS (its statistics take a few seconds).
        mine: list[dict[str, object]] = []
        deadline = time.monotonic() + 20
        with endpoint.management() as api:
            while not mine and time.monotonic() < deadline:
                mine = [c for c in api.list_connections() if str(c.get("user")).endswith(JIUJIANG)]
                await asyncio.sleep(0.5)
        assert mine and all(c.get("ssl") for c in mine), mine
    with endpoint.management() as api:
        api.delete_vhost(vhost)


async def test_a_client_trusting_another_ca_is_refused(tls_broker: TlsBroker, tmp_path: Path) -> None:
    other = TestCA("not the exchange's CA")
    wrong_ca = other.write_ca(tmp_path / "other-ca.pem")
    right_ca = quote(str(tls_broker.files / "ca.pem"), safe="")
    query = tls_broker.query.replace(right_ca, quote(str(wrong_ca), safe=""))
    assert query != tls_broker.query
    with pytest.raises(REFUSED) as caught:
        connection = await connect(tls_broker.admin_url(query), name="wrong-ca", connect_timeout_s=10)
        await connection.close()
    assert "CERTIFICATE_VERIFY_FAILED" in repr(caught.value) or isinstance(
        caught.value.__cause__ or caught.value, ssl.SSLError
    ), repr(caught.value)
    endpoint = BrokerEndpoint.from_url(tls_broker.admin_url(query), tls_broker.management_url, "test")
    with (
        pytest.raises(ManagementError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"),
        endpoint.management() as api,
    ):
        api.overview()


async def test_a_client_without_a_certificate_or_with_plaintext_is_refused(tls_broker: TlsBroker) -> None:
    only_ca = urlencode({"cafile": str(tls_broker.files / "ca.pem")})
    with pytest.raises(REFUSED):  # the broker requires a client certificate
        connection = await connect(tls_broker.admin_url(only_ca), name="no-cert", connect_timeout_s=10)
        await connection.close()
    # The host name is checked: the certificate names 127.0.0.1 and localhost, not this one.
    api = ManagementClient(
        f"https://127.0.0.2:{tls_broker.container.port(15671)}",
        tls_broker.container.username,
        tls_broker.container.password,
        verify=ssl.create_default_context(cafile=str(tls_broker.files / "ca.pem")),
    )
    with pytest.raises(ManagementError), api:
        api.overview()
