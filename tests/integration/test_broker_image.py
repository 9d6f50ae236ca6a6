"""The offline broker image (deploy/images/rabbitmq) is hardened, proven on real containers.

Three containers of one image: ``plain`` (administrator from variables, TLS mounted and plaintext kept
as tests use it), ``secret`` (administrator from mounted secret files, TLS only, client certificates
required) and a short-lived clustering one; plus containers that must refuse to start. Without a
Docker engine or the image these tests skip locally and fail in CI, like test_provider's.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import aio_pika
import aiormq
import httpx
import pytest

from broker.provider import ADMIN_USER, BrokerContainer, start_broker_container
from tests.integration.tls_support import TestCA

IMAGE = os.environ.get("JIEXU_RABBITMQ_IMAGE", "jiexu/rabbitmq:offline")
BUILD = Path(__file__).resolve().parents[2] / "deploy" / "images" / "rabbitmq" / "build.sh"
COOKIE = "/var/lib/rabbitmq/.erlang.cookie"
FIRST_START_CONFIG = "/var/lib/rabbitmq/jiexu-first-start.config"
MAX_MESSAGE_SIZE = 2 * 1024 * 1024
READY_S = 90.0
# The environment of the server's processes: the main one (the rabbitmq-server script) and the VM.
SERVER_ENVIRON = (
    "for p in /proc/[0-9]*; do "
    'if [ "${p#/proc/}" = 1 ] || [ "$(cat $p/comm)" = beam.smp ]; then cat $p/environ; fi; '
    "done | tr '\\0' '\\n'"
)


def _require_image() -> None:
    """In CI the image must be there; on a developer's machine its absence is a skip."""
    why = None
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception as exc:
        why = f"no Docker engine answers ({type(exc).__name__}); start one: `dockerd &`"
    else:
        try:
            client.images.get(IMAGE)
        except Exception:
            why = f"image {IMAGE} is not built: run deploy/images/rabbitmq/build.sh"
    if why is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must test the broker image: {why}")
    pytest.skip(why)


def _wait(what: str, check: Callable[[], bool], container: BrokerContainer | None = None) -> None:
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        if container is not None and (dead := container.dead()):
            pytest.fail(f"{what}: {dead}")
        try:
            if check():
                return
        except (OSError, httpx.HTTPError):
            pass
        time.sleep(0.5)
    logs = container.logs(tail=30) if container is not None else ""
    pytest.fail(f"{what}: not within {READY_S:.0f} s\n{logs}")


def _listening(container: BrokerContainer) -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket in the container, from /proc/net/tcp{,6}."""
    code, text = container.exec("cat", "/proc/net/tcp", "/proc/net/tcp6")
    assert code == 0, text
    found: set[tuple[str, int]] = set()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[3] != "0A" or ":" not in fields[1]:
            continue
        address, port = fields[1].split(":")
        if len(address) == 8:
            ip = socket.inet_ntop(socket.AF_INET, bytes.fromhex(address)[::-1])
        else:
            words = [bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, 32, 8)]
            ip = socket.inet_ntop(socket.AF_INET6, b"".join(words))
        found.add((ip, int(port, 16)))
    return found


def _management_ok(url: str, auth: tuple[str, str], verify: ssl.SSLContext | bool = True) -> bool:
    response = httpx.get(f"{url}/api/overview", auth=auth, verify=verify, timeout=5)
    return response.status_code == 200


def _run_refused(environment: dict[str, str], volumes: dict[str, dict[str, str]] | None = None) -> str:
    """Run the image expecting its entrypoint to refuse: the message it printed."""
    import docker

    client = docker.from_env()
    container = client.containers.run(
        IMAGE, environment=environment, volumes=volumes or {}, detach=True
    )
    try:
        status = container.wait(timeout=60)
        output: bytes = container.logs()
    finally:
        container.remove(force=True)
    assert status["StatusCode"] == 64, output.decode(errors="replace")
    return output.decode(errors="replace")


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


@pytest.fixture(scope="module")
def tls_dir(ca: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ca.write_server_dir(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def plain(tls_dir: Path) -> Iterator[BrokerContainer]:
    """The provider's kind of container: administrator from variables, plain ports kept; TLS too."""
    _require_image()
    container = start_broker_container(
        IMAGE, tls_dir=tls_dir, environment={"JIEXU_RABBITMQ_PLAINTEXT": "true"}
    )
    try:
        url = f"http://127.0.0.1:{container.port(15672)}"
        auth = (container.username, container.password)
        _wait("plain container", lambda: _management_ok(url, auth), container)
        yield container
    finally:
        container.stop()


SECRET_USER = "operator-7"
SECRET_PASS = 'a "pass#word" with \\ and spaces '


@pytest.fixture(scope="module")
def client_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("client")


@pytest.fixture(scope="module")
def secret(
    tls_dir: Path, ca: TestCA, client_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrokerContainer]:
    """Administrator from mounted secret files; TLS only; a client certificate required."""
    _require_image()
    secrets_dir = tmp_path_factory.mktemp("secrets")
    (secrets_dir / "user").write_text(SECRET_USER + "\n")
    (secrets_dir / "pass").write_text(SECRET_PASS)
    container = start_broker_container(
        IMAGE,
        username=None,
        tls_dir=tls_dir,
        environment={
            "RABBITMQ_DEFAULT_USER_FILE": "/run/secrets/user",
            "RABBITMQ_DEFAULT_PASS_FILE": "/run/secrets/pass",
            "JIEXU_RABBITMQ_TLS_CLIENT_CERT": "required",
        },
        mounts={secrets_dir: "/run/secrets"},
    )
    container.password = SECRET_PASS
    container.username = SECRET_USER
    context = ca.client_context(ca.issue_client("operator-7"), client_dir)
    try:
        url = f"https://127.0.0.1:{container.port(15671)}"
        _wait(
            "secret container",
            lambda: _management_ok(url, (SECRET_USER, SECRET_PASS), context),
            container,
        )
        yield container
    finally:
        container.stop()


# -- the provider's container --------------------------------------------------------------------


def test_ports_are_published_on_loopback_only(plain: BrokerContainer) -> None:
    plain.docker.reload()
    bindings = plain.docker.attrs["NetworkSettings"]["Ports"]
    published = [b for port in bindings.values() if port for b in port]
    assert {b["HostIp"] for b in published} == {"127.0.0.1"}, bindings


def test_the_administrator_comes_from_the_variables(plain: BrokerContainer) -> None:
    assert plain.username == ADMIN_USER
    url = f"http://127.0.0.1:{plain.port(15672)}"
    auth = (plain.username, plain.password)
    assert httpx.get(f"{url}/api/whoami", auth=auth).json() == {
        "name": ADMIN_USER,
        "tags": ["administrator"],
    }
    users = httpx.get(f"{url}/api/users", auth=auth).json()
    assert [u["name"] for u in users] == [ADMIN_USER]  # and no guest at all
    # The password reached the node in a file only the rabbitmq user reads, not its environment.
    code, mode = plain.exec("stat", "-c", "%a %U", FIRST_START_CONFIG)
    assert (code, mode.strip()) == (0, "400 rabbitmq")
    # (docker exec hands the container's variables to what it runs: only the server is looked at)
    code, environ = plain.exec("sh", "-c", SERVER_ENVIRON, user="rabbitmq")
    assert code == 0 and "HOME=/var/lib/rabbitmq" in environ, environ
    assert "RABBITMQ_DEFAULT" not in environ and plain.password not in environ


async def test_guest_cannot_log_in_through_the_published_port(plain: BrokerContainer) -> None:
    url = f"amqp://guest:guest@127.0.0.1:{plain.port(5672)}/"
    with pytest.raises(aiormq.exceptions.ProbableAuthenticationError):
        await aio_pika.connect(url, timeout=10)
    api = f"http://127.0.0.1:{plain.port(15672)}/api/whoami"
    async with httpx.AsyncClient() as http:
        assert (await http.get(api, auth=("guest", "guest"))).status_code == 401
    # Even a guest someone creates inside, with every right, stays loopback-only.
    for command in (
        ["rabbitmqctl", "add_user", "guest", "guest"],
        ["rabbitmqctl", "set_permissions", "guest", ".*", ".*", ".*"],
        ["rabbitmqctl", "set_user_tags", "guest", "administrator"],
    ):
        code, output = plain.exec(*command)
        assert code == 0, output
    with pytest.raises(aiormq.exceptions.ProbableAuthenticationError):
        await aio_pika.connect(url, timeout=10)
    async with httpx.AsyncClient() as http:
        assert (await http.get(api, auth=("guest", "guest"))).status_code == 401
    for line in (
        "PLAIN login refused: user 'guest' can only connect via localhost",
        "HTTP access denied: user 'guest' - User can only log in via localhost",
    ):
        _wait(f"the broker's log saying {line!r}", lambda line=line: line in plain.logs())


def test_erlang_distribution_listens_on_loopback_only(plain: BrokerContainer) -> None:
    listening = _listening(plain)
    # with certificates and JIEXU_RABBITMQ_PLAINTEXT=true: plain and TLS listeners side by side
    assert {5671, 5672, 15671, 15672, 15691, 15692} <= {port for _, port in listening}
    dist = {(ip, port) for ip, port in listening if port in (4369, 25672)}
    assert dist == {("127.0.0.1", 4369), ("127.0.0.1", 25672)}, listening
    code, output = plain.exec("rabbitmqctl", "-q", "eval", "node().")
    assert (code, output.strip()) == (0, "rabbit@localhost")


async def test_a_message_over_the_size_cap_is_refused_by_the_broker(plain: BrokerContainer) -> None:
    url = f"amqp://{plain.username}:{plain.password}@127.0.0.1:{plain.port(5672)}/"
    connection = await aio_pika.connect(url, timeout=10)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue("", exclusive=True)
        # Above the contract's 1 MiB, under the broker's cap: delivered (the consumer dead-letters it).
        body = b"x" * (MAX_MESSAGE_SIZE - 64 * 1024)
        await channel.default_exchange.publish(aio_pika.Message(body), routing_key=queue.name)
        got = await queue.get(timeout=10, fail=True)
        assert got is not None and len(got.body) == len(body)
        await got.ack()
        with pytest.raises(aiormq.exceptions.AMQPError) as refused:
            await channel.default_exchange.publish(
                aio_pika.Message(b"x" * (MAX_MESSAGE_SIZE + 1)), routing_key=queue.name
            )
            await asyncio.sleep(1)
            await channel.declare_queue("", exclusive=True)  # the channel is closed by now
        assert "larger than configured max size" in str(refused.value), refused.value


# -- the Erlang cookie -----------------------------------------------------------------------------


def test_the_image_holds_no_erlang_cookie() -> None:
    _require_image()
    import docker

    output = docker.from_env().containers.run(
        IMAGE,
        entrypoint=["/bin/sh", "-c"],
        command=["find / -xdev -name .erlang.cookie; ls -A /var/lib/rabbitmq/mnesia"],
        remove=True,
    )
    assert output.decode().strip() == ""


def test_each_container_has_its_own_cookie(plain: BrokerContainer, secret: BrokerContainer) -> None:
    cookies = []
    for container in (plain, secret):
        code, stat = container.exec("stat", "-c", "%a %U %G", COOKIE)
        assert (code, stat.strip()) == (0, "400 rabbitmq rabbitmq")
        code, cookie = container.exec("cat", COOKIE)
        assert code == 0 and len(cookie) == 64 and int(cookie, 16) > 0
        cookies.append(cookie)
    assert cookies[0] != cookies[1]


def test_clustering_takes_the_given_cookie_and_opens_the_distribution(tmp_path: Path) -> None:
    """Also: the administrator from an advanced.config of the operator's, instead of variables."""
    _require_image()
    cookie = "SHAREDclusterCOOKIE0123456789"
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "cookie").write_text(cookie + "\n")
    (tmp_path / "advanced.config").write_text(
        '[{rabbit, [{default_user, <<"ops">>}, {default_pass, <<"from-advanced-config">>}]}].\n'
    )
    container = start_broker_container(
        IMAGE,
        username=None,
        environment={
            "JIEXU_RABBITMQ_CLUSTER": "true",
            "RABBITMQ_ERLANG_COOKIE_FILE": "/run/secrets/cookie",
        },
        mounts={
            tmp_path / "secrets": "/run/secrets",
            tmp_path / "advanced.config": "/etc/rabbitmq/advanced.config",
        },
    )
    try:
        url = f"http://127.0.0.1:{container.port(15672)}"
        _wait(
            "clustering container",
            lambda: _management_ok(url, ("ops", "from-advanced-config")),
            container,
        )
        dist = {ip for ip, port in _listening(container) if port == 25672}
        assert dist & {"0.0.0.0", "::"}, dist
        assert container.exec("cat", COOKIE) == (0, cookie)
        code, stat = container.exec("stat", "-c", "%a %U", COOKIE)
        assert (code, stat.strip()) == (0, "400 rabbitmq")
    finally:
        container.stop()


# -- refusals: the entrypoint stops before the server starts ----------------------------------------


def test_without_an_administrator_the_container_refuses_to_start() -> None:
    _require_image()
    assert "no administrator: set RABBITMQ_DEFAULT_USER" in _run_refused({})


def test_guest_as_the_administrator_is_refused() -> None:
    _require_image()
    output = _run_refused({"RABBITMQ_DEFAULT_USER": "guest", "RABBITMQ_DEFAULT_PASS": "guest"})
    assert "RABBITMQ_DEFAULT_USER=guest is refused" in output


def test_clustering_without_a_shared_cookie_is_refused() -> None:
    _require_image()
    output = _run_refused(
        {
            "RABBITMQ_DEFAULT_USER": "admin",
            "RABBITMQ_DEFAULT_PASS": "a-long-password",
            "JIEXU_RABBITMQ_CLUSTER": "true",
        }
    )
    assert "needs the cluster's shared cookie" in output


def test_variables_and_an_advanced_config_for_the_administrator_are_refused(tmp_path: Path) -> None:
    _require_image()
    (tmp_path / "advanced.config").write_text("[].\n")
    output = _run_refused(
        {"RABBITMQ_DEFAULT_USER": "admin", "RABBITMQ_DEFAULT_PASS": "a-long-password"},
        {str(tmp_path / "advanced.config"): {"bind": "/etc/rabbitmq/advanced.config", "mode": "ro"}},
    )
    assert "put default_user and default_pass in it instead of RABBITMQ_DEFAULT_USER" in output
    assert "names no default_user" in _run_refused(
        {}, {str(tmp_path / "advanced.config"): {"bind": "/etc/rabbitmq/advanced.config", "mode": "ro"}}
    )


def test_a_switch_that_is_neither_true_nor_false_is_refused() -> None:
    _require_image()
    output = _run_refused(
        {
            "RABBITMQ_DEFAULT_USER": "admin",
            "RABBITMQ_DEFAULT_PASS": "a-long-password",
            "JIEXU_RABBITMQ_PLAINTEXT": "maybe",
        }
    )
    assert "JIEXU_RABBITMQ_PLAINTEXT is true or false, not 'maybe'" in output


def test_half_a_tls_mount_is_refused(tmp_path: Path, ca: TestCA) -> None:
    _require_image()
    ca.write_ca(tmp_path / "ca_certificate.pem")
    output = _run_refused(
        {"RABBITMQ_DEFAULT_USER": "admin", "RABBITMQ_DEFAULT_PASS": "a-long-password"},
        {str(tmp_path): {"bind": "/etc/rabbitmq/tls", "mode": "ro"}},
    )
    assert "TLS needs all of" in output and "found 1 of 3" in output


# -- TLS -------------------------------------------------------------------------------------------


async def _amqps_round_trip(url: str, context: ssl.SSLContext) -> bytes:
    connection = await aio_pika.connect(url, ssl_context=context, timeout=10)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue("", exclusive=True)
        await channel.default_exchange.publish(aio_pika.Message(b"tls"), routing_key=queue.name)
        message = await queue.get(timeout=10, fail=True)
        assert message is not None
        await message.ack()
        return message.body


def _certificate_refused(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


async def test_amqps_verifying_the_ca_succeeds_and_a_wrong_ca_is_refused(
    plain: BrokerContainer, ca: TestCA
) -> None:
    url = f"amqps://{plain.username}:{plain.password}@127.0.0.1:{plain.port(5671)}/"
    assert await _amqps_round_trip(url, ca.client_context()) == b"tls"
    # localhost is in the certificate as well
    localhost_url = url.replace("@127.0.0.1:", "@localhost:")
    assert await _amqps_round_trip(localhost_url, ca.client_context()) == b"tls"
    with pytest.raises(Exception) as refused:
        await aio_pika.connect(url, ssl_context=TestCA("a stranger").client_context(), timeout=10)
    assert _certificate_refused(refused.value), repr(refused.value)


def test_management_https_verifies_against_the_ca(plain: BrokerContainer, ca: TestCA) -> None:
    url = f"https://127.0.0.1:{plain.port(15671)}/api/whoami"
    auth = (plain.username, plain.password)
    assert httpx.get(url, auth=auth, verify=ca.client_context()).json()["name"] == ADMIN_USER
    with pytest.raises(httpx.ConnectError) as refused:
        httpx.get(url, auth=auth, verify=TestCA("a stranger").client_context())
    assert _certificate_refused(refused.value)


async def test_with_certificates_only_tls_listens_and_a_client_certificate_is_required(
    secret: BrokerContainer, ca: TestCA, client_dir: Path, tmp_path: Path
) -> None:
    ports = {port for _, port in _listening(secret)}
    assert {5671, 15671, 15691} <= ports and not {5672, 15672, 15692} & ports, ports
    user, password = quote(SECRET_USER, safe=""), quote(SECRET_PASS, safe="")
    url = f"amqps://{user}:{password}@127.0.0.1:{secret.port(5671)}/"
    with_client = ca.client_context(ca.issue_client("operator-7"), client_dir)
    assert await _amqps_round_trip(url, with_client) == b"tls"
    with pytest.raises(Exception):  # noqa: B017 - the server ends the handshake; how varies
        await _amqps_round_trip(url, ca.client_context())
    stranger = TestCA("a stranger")
    with pytest.raises(Exception):  # noqa: B017
        await _amqps_round_trip(url, _foreign_client_context(ca, stranger, tmp_path))


def _foreign_client_context(ca: TestCA, stranger: TestCA, directory: Path) -> ssl.SSLContext:
    """Trusts the server's CA but presents a certificate the stranger CA issued."""
    context = ca.client_context()
    cert, key = stranger.issue_client("intruder").write(directory, "intruder")
    context.load_cert_chain(cert, key)
    return context


def test_the_administrator_comes_from_secret_files(secret: BrokerContainer) -> None:
    secret.docker.reload()
    env = secret.docker.attrs["Config"]["Env"]
    assert not any(SECRET_PASS.strip() in item for item in env)
    code, output = secret.exec("rabbitmqctl", "-q", "list_users")
    assert code == 0 and SECRET_USER in output and "guest" not in output


def test_a_restart_keeps_the_cookie_and_drops_the_first_start_secret(
    secret: BrokerContainer, ca: TestCA, client_dir: Path
) -> None:
    _, cookie_before = secret.exec("cat", COOKIE)
    assert secret.exec("test", "-e", FIRST_START_CONFIG)[0] == 0
    secret.docker.restart(timeout=30)
    context = ca.client_context(ca.issue_client("operator-7"), client_dir)
    url = f"https://127.0.0.1:{secret.port(15671)}"
    _wait("restarted container", lambda: _management_ok(url, (SECRET_USER, SECRET_PASS), context), secret)
    assert secret.exec("cat", COOKIE) == (0, cookie_before)
    assert secret.exec("test", "-e", FIRST_START_CONFIG)[0] == 1


# -- the build script's mirror -----------------------------------------------------------------


def _print_mirror(apt_etc: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k != "DEBIAN_MIRROR"}
    return subprocess.run(
        ["bash", str(BUILD), "--print-mirror"],
        env={**clean, "JIEXU_APT_ETC": str(apt_etc), **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_mirror_comes_from_apt_sources_or_debian_mirror_and_nowhere_else(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    done = _print_mirror(tmp_path)
    assert done.returncode != 0 and done.stdout == ""
    assert "DEBIAN_MIRROR is not set" in done.stderr and "no default mirror" in done.stderr

    (tmp_path / "sources.list").write_text(
        "# deb http://commented.invalid/debian bookworm main\n"
        "deb [signed-by=/k.gpg] http://one-line.invalid/debian bookworm main\n"
    )
    assert _print_mirror(tmp_path).stdout.strip() == "http://one-line.invalid/debian"

    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://security.invalid/debian-security\nSuites: bookworm-security\n"
        "Components: main\n\n"
        "Types: deb\nURIs: http://disabled.invalid/debian\nSuites: bookworm\nEnabled: no\n\n"
        "Types: deb-src deb\nURIs: http://deb822.invalid/debian\nSuites: bookworm bookworm-updates\n"
    )
    assert _print_mirror(tmp_path).stdout.strip() == "http://deb822.invalid/debian"
    given = _print_mirror(tmp_path, DEBIAN_MIRROR="http://given.invalid/debian")
    assert given.stdout.strip() == "http://given.invalid/debian"
    assert _print_mirror(tmp_path, DEBIAN_SUITE="trixie").returncode != 0
