"""Find or start a real RabbitMQ: the provider chain shared by `jiexu demo` and the pytest plugin.

Order: ``JIEXU_AMQP_URL`` if set; a broker answering on 127.0.0.1:5672 (with its management API);
a throwaway container through testcontainers; a throwaway local ``rabbitmq-server`` node on free
ports in a temporary directory. ``JIEXU_BROKER_PROVIDERS`` (comma-separated: ``localhost``,
``container``, ``local-node``) narrows or reorders the chain that applies when the URL is unset.

The container itself (`start_broker_container`, `BrokerContainer`, its administrator
`ADMIN_USER`) lives in `broker.container`; this module re-exports it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from broker.address import BrokerAddress, parse_broker_url
from broker.container import (
    ADMIN_USER,
    BrokerContainer,
    _container_env_defaults,
    start_broker_container,
)
from broker.management import ManagementClient, ManagementError
from broker.tls import check_amqp_url, check_http_url, management_tls

__all__ = [
    "ADMIN_USER",
    "DEFAULT_RABBITMQ_IMAGE",
    "PROVIDER_NAMES",
    "BrokerContainer",
    "BrokerEndpoint",
    "BrokerUnavailable",
    "ProvidedBroker",
    "acquire_broker",
    "provided_broker",
    "start_broker_container",
]

log = structlog.get_logger("jiexu.broker.provider")

DEFAULT_RABBITMQ_IMAGE = "rabbitmq:3.13.7-management"
PROVIDER_NAMES = ("localhost", "container", "local-node")
READY_TIMEOUT_S = 90.0


class BrokerUnavailable(RuntimeError):
    """No provider produced a broker; the message lists every attempt and how to fix it."""

    def __init__(self, attempts: list[tuple[str, str, str]]) -> None:
        self.attempts = attempts
        lines = ["no RabbitMQ broker could be found or started. Tried, in order:"]
        for i, (name, why, fix) in enumerate(attempts, 1):
            lines.append(f"  {i}. {name}: {why}\n     fix: {fix}")
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class BrokerEndpoint:
    """Where a broker answers: AMQP host/port, management API, administrator credentials.

    A cluster's endpoint also lists its other nodes (``more_hosts``, ``more_management_urls``):
    `amqp_url` then names every node and `management` falls over from one node's API to the next.
    """

    host: str
    amqp_port: int
    management_url: str
    username: str
    password: str
    source: str
    vhost: str = "/"
    more_hosts: tuple[tuple[str, int], ...] = ()
    more_management_urls: tuple[str, ...] = ()
    query: str = ""  # cafile, certfile, keyfile...: kept in every URL made (broker.tls)
    scheme: str = "amqp"
    management_verify: Any = None  # httpx's verify; None: management_tls of the URL's query

    @property
    def hosts(self) -> tuple[tuple[str, int], ...]:
        return ((self.host, self.amqp_port), *self.more_hosts)

    @property
    def management_urls(self) -> tuple[str, ...]:
        return (self.management_url, *self.more_management_urls)

    def address(
        self, vhost: str | None = None, username: str | None = None, password: str | None = None
    ) -> BrokerAddress:
        return BrokerAddress(
            scheme=self.scheme,
            hosts=self.hosts,
            username=username or self.username,
            password=password if password is not None else self.password,
            vhost=vhost if vhost is not None else self.vhost,
            query=self.query,
        )

    def amqp_url(
        self, vhost: str | None = None, username: str | None = None, password: str | None = None
    ) -> str:
        """The URL naming every node of this broker (one host for a single node)."""
        return self.address(vhost, username, password).url()

    def management(self, timeout: float = 10.0) -> ManagementClient:
        verify = self.management_verify
        verify = management_tls(self.amqp_url()) if verify is None else verify
        return ManagementClient(
            self.management_url,
            self.username,
            self.password,
            timeout=timeout,
            fallback_urls=self.more_management_urls,
            verify=verify,
        )

    @classmethod
    def from_url(cls, url: str, management_url: str | None, source: str) -> BrokerEndpoint:
        """From ``JIEXU_AMQP_URL`` (one or several hosts) and ``JIEXU_MANAGEMENT_URL`` (optional,
        one or several). Raises `BrokerURLError` (a `ValueError`) with a one-line message."""
        address = parse_broker_url(url)
        check_amqp_url(url, source)
        managers = address.management_urls(management_url)
        for manager in managers:
            check_http_url(manager, "the management URL (JIEXU_MANAGEMENT_URL)")
        return cls(
            host=address.host,
            amqp_port=address.port,
            management_url=managers[0],
            username=address.username,
            password=address.password,
            source=source,
            vhost=address.vhost,
            more_hosts=address.hosts[1:],
            more_management_urls=tuple(managers[1:]),
            query=address.query,
            scheme=address.scheme,
        )


@dataclass
class ProvidedBroker:
    """A broker in use; ``close()`` stops it when this process started it."""

    endpoint: BrokerEndpoint
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        while self._closers:
            closer = self._closers.pop()
            with contextlib.suppress(Exception):
                closer()


class _ProviderFailed(Exception):
    def __init__(self, why: str, fix: str) -> None:
        super().__init__(why)
        self.why = why
        self.fix = fix


def _port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _management_answers(endpoint: BrokerEndpoint) -> str | None:
    """None when the management API answers with the given credentials, else the reason."""
    try:
        with endpoint.management() as api:
            api.overview()
    except ManagementError as exc:
        return str(exc)
    return None


def _wait_ready(endpoint: BrokerEndpoint, deadline: float, alive: Callable[[], str | None]) -> None:
    last = "not started"
    while time.monotonic() < deadline:
        dead = alive()
        if dead:
            raise _ProviderFailed(dead, "see the broker's log above")
        if _port_open(endpoint.host, endpoint.amqp_port, 0.5):
            reason = _management_answers(endpoint)
            if reason is None:
                return
            last = reason
        else:
            last = f"AMQP port {endpoint.amqp_port} not accepting connections"
        time.sleep(0.5)
    raise _ProviderFailed(f"not ready after {READY_TIMEOUT_S:.0f} s: {last}", "see its log")


# -- the providers --------------------------------------------------------------------------


def _from_env_url(env: Mapping[str, str]) -> ProvidedBroker:
    url = env["JIEXU_AMQP_URL"]
    try:
        endpoint = BrokerEndpoint.from_url(url, env.get("JIEXU_MANAGEMENT_URL"), "JIEXU_AMQP_URL")
    except ValueError as exc:
        raise _ProviderFailed(str(exc), "set JIEXU_AMQP_URL to amqp://user:pass@host:port/") from exc
    if not any(_port_open(host, port) for host, port in endpoint.hosts):
        where = ", ".join(f"{host}:{port}" for host, port in endpoint.hosts)
        raise _ProviderFailed(
            f"nothing answers at {where}",
            "start that broker, or unset JIEXU_AMQP_URL to let jiexu find or start one",
        )
    reason = _management_answers(endpoint)
    if reason:
        raise _ProviderFailed(
            f"management API: {reason}",
            "enable it (rabbitmq-plugins enable rabbitmq_management) or set JIEXU_MANAGEMENT_URL",
        )
    return ProvidedBroker(endpoint)


def _from_localhost(env: Mapping[str, str]) -> ProvidedBroker:
    port = int(env.get("JIEXU_LOCAL_AMQP_PORT", "5672"))
    mgmt_port = int(env.get("JIEXU_LOCAL_MANAGEMENT_PORT", "15672"))
    endpoint = BrokerEndpoint(
        host="127.0.0.1",
        amqp_port=port,
        management_url=f"http://127.0.0.1:{mgmt_port}",
        username=env.get("JIEXU_LOCAL_USER", "guest"),
        password=env.get("JIEXU_LOCAL_PASSWORD", "guest"),
        source="localhost",
    )
    if not _port_open(endpoint.host, port):
        raise _ProviderFailed(
            f"nothing answers on 127.0.0.1:{port}",
            "start RabbitMQ there (e.g. `rabbitmq-server -detached`), or set JIEXU_AMQP_URL",
        )
    reason = _management_answers(endpoint)
    if reason:
        raise _ProviderFailed(
            f"a broker answers on 127.0.0.1:{port} but its management API does not ({reason})",
            "run `rabbitmq-plugins enable rabbitmq_management` (jiexu provisions vhosts and "
            "users through it)",
        )
    return ProvidedBroker(endpoint)


def _from_container(env: Mapping[str, str]) -> ProvidedBroker:
    image = env.get("JIEXU_RABBITMQ_IMAGE", DEFAULT_RABBITMQ_IMAGE)
    _container_env_defaults()
    try:
        import docker
        import testcontainers.core.container  # noqa: F401  (is the fallback installed?)
    except ImportError as exc:
        # testcontainers (and docker) are in the test extra only: an agent never needs them.
        raise _ProviderFailed(
            f"testcontainers is not installed ({exc}): the container fallback is for tests and the demo",
            "pip install 'jiexu[test]' (or set JIEXU_AMQP_URL to a broker)",
        ) from exc
    try:
        docker.from_env(environment=dict(env)).ping()
    except Exception as exc:
        raise _ProviderFailed(
            f"no Docker engine answers ({type(exc).__name__}: {str(exc)[:160]})",
            "start Docker (e.g. `dockerd &`), or set DOCKER_HOST",
        ) from exc
    try:
        started = start_broker_container(image)
    except Exception as exc:
        raise _ProviderFailed(
            f"could not start image {image!r} ({type(exc).__name__}: {str(exc)[:200]})",
            "make the image available: `docker pull` it, or build the offline one with "
            "`deploy/images/rabbitmq/build.sh` and set JIEXU_RABBITMQ_IMAGE=jiexu/rabbitmq:offline",
        ) from exc
    provided = ProvidedBroker(
        BrokerEndpoint(
            host=started.host,
            amqp_port=started.port(5672),
            management_url=f"http://{started.host}:{started.port(15672)}",
            username=started.username,
            password=started.password,
            source=f"container {image}",
        )
    )
    provided._closers.append(started.stop)
    try:
        _wait_ready(provided.endpoint, time.monotonic() + READY_TIMEOUT_S, started.dead)
    except _ProviderFailed:
        provided.close()
        raise
    return provided


def _rabbitmq_server_binary(env: Mapping[str, str]) -> str | None:
    explicit = env.get("JIEXU_RABBITMQ_SERVER")
    if explicit:
        return explicit if Path(explicit).exists() else None
    # The Debian wrapper in /usr/sbin switches to the rabbitmq user and into its home; the real
    # script beside it runs as whoever we are, with our temporary directories.
    for candidate in ("/usr/lib/rabbitmq/bin/rabbitmq-server",):
        if Path(candidate).exists():
            return candidate
    return shutil.which("rabbitmq-server")


def _from_local_node(env: Mapping[str, str]) -> ProvidedBroker:
    binary = _rabbitmq_server_binary(env)
    if binary is None:
        raise _ProviderFailed(
            "no rabbitmq-server executable found",
            "install it (Debian: `apt-get install rabbitmq-server`) or set JIEXU_RABBITMQ_SERVER",
        )
    base = Path(tempfile.mkdtemp(prefix="jiexu-rabbit-"))
    amqp_port, mgmt_port, dist_port = _free_port(), _free_port(), _free_port()
    node = f"jiexu{uuid.uuid4().hex[:8]}@localhost"
    (base / "rabbitmq.conf").write_text(
        f"listeners.tcp.default = 127.0.0.1:{amqp_port}\n"
        f"management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {mgmt_port}\n"
        "loopback_users = none\n"
    )
    (base / "enabled_plugins").write_text("[rabbitmq_management].\n")
    (base / "rabbitmq-env.conf").write_text("")
    child_env = {
        **os.environ,
        "HOME": str(base),
        "RABBITMQ_NODENAME": node,
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(amqp_port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_PID_FILE": str(base / "pid"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
        "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
    }
    log_file = (base / "server.log").open("wb")
    try:
        process = subprocess.Popen(
            [binary],
            env=child_env,
            cwd=base,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as exc:
        log_file.close()
        shutil.rmtree(base, ignore_errors=True)
        raise _ProviderFailed(f"could not run {binary}: {exc}", "check the installation") from exc

    def stop() -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        log_file.close()
        shutil.rmtree(base, ignore_errors=True)

    provided = ProvidedBroker(
        BrokerEndpoint(
            host="127.0.0.1",
            amqp_port=amqp_port,
            management_url=f"http://127.0.0.1:{mgmt_port}",
            username="guest",
            password="guest",
            source=f"local node {node}",
        )
    )
    provided._closers.append(stop)

    def alive() -> str | None:
        if process.poll() is not None:
            tail = (base / "server.log").read_text(errors="replace")[-1500:]
            return f"rabbitmq-server exited with {process.returncode}: {tail}"
        return None

    try:
        _wait_ready(provided.endpoint, time.monotonic() + READY_TIMEOUT_S, alive)
    except _ProviderFailed:
        provided.close()
        raise
    return provided


_PROVIDERS: dict[str, tuple[str, Callable[[Mapping[str, str]], ProvidedBroker]]] = {
    "localhost": ("a broker on 127.0.0.1:5672", _from_localhost),
    "container": ("a throwaway container (testcontainers)", _from_container),
    "local-node": ("a throwaway local rabbitmq-server node", _from_local_node),
}


def acquire_broker(env: Mapping[str, str] | None = None) -> ProvidedBroker:
    """Return a running broker from the first provider that works, or raise `BrokerUnavailable`."""
    env = os.environ if env is None else env
    attempts: list[tuple[str, str, str]] = []
    if env.get("JIEXU_AMQP_URL"):
        try:
            provided = _from_env_url(env)
        except _ProviderFailed as exc:
            attempts.append(("JIEXU_AMQP_URL", exc.why, exc.fix))
            raise BrokerUnavailable(attempts) from None
        log.info("broker_found", source=provided.endpoint.source)
        return provided
    attempts.append(("JIEXU_AMQP_URL", "not set", "set it to use a broker of your own"))
    chosen = [n.strip() for n in env.get("JIEXU_BROKER_PROVIDERS", ",".join(PROVIDER_NAMES)).split(",")]
    for name in chosen:
        if not name:
            continue
        if name not in _PROVIDERS:
            attempts.append((name, "unknown provider", f"use one of {', '.join(PROVIDER_NAMES)}"))
            continue
        label, start = _PROVIDERS[name]
        try:
            provided = start(env)
        except _ProviderFailed as exc:
            log.info("broker_provider_failed", provider=name, reason=exc.why[:300])
            attempts.append((label, exc.why, exc.fix))
            continue
        log.info("broker_found", source=provided.endpoint.source)
        return provided
    raise BrokerUnavailable(attempts)


@contextlib.contextmanager
def provided_broker(env: Mapping[str, str] | None = None) -> Iterator[BrokerEndpoint]:
    """Context manager form of `acquire_broker` that stops what it started."""
    provided = acquire_broker(env)
    try:
        yield provided.endpoint
    finally:
        provided.close()
