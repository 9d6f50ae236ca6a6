"""Broker addresses: the one place that reads ``JIEXU_AMQP_URL`` and ``JIEXU_MANAGEMENT_URL``.

A cluster is named by one URL listing every node, comma-separated::

    amqp://user:pass@h1:5681,h2:5682,h3:5683/vhost?heartbeat=5

(a comma-separated list of whole URLs with the same user, password and vhost means the same).
Clients try the nodes in the order given; `broker.connection` moves to another node when one
fails. The management API is reached per node: ``JIEXU_MANAGEMENT_URL`` may list one URL per node
(comma-separated); unset, each node's is ``http://HOST:AMQP_PORT+10000`` (5672 -> 15672, RabbitMQ's
own convention), never a fixed 15672 that may belong to another broker.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote

__all__ = [
    "DEFAULT_HEARTBEAT_S",
    "BrokerAddress",
    "BrokerURLError",
    "management_urls",
    "parse_broker_url",
]

DEFAULT_HEARTBEAT_S = 5
"""AMQP heartbeat proposed by jiexu's clients unless the URL says ``?heartbeat=N``. aiormq declares
a connection dead after (N + 1) x 3 s without a frame: 18 s here, 183 s with the usual 60."""

MANAGEMENT_PORT_OFFSET = 10000


class BrokerURLError(ValueError):
    """A broker URL that cannot be used; the message is one line saying why and what to write."""


@dataclass(frozen=True)
class BrokerAddress:
    """An AMQP URL with one or more nodes (host, port), one login and one vhost."""

    scheme: str
    hosts: tuple[tuple[str, int], ...]
    username: str
    password: str
    vhost: str
    query: str = ""

    @property
    def host(self) -> str:
        return self.hosts[0][0]

    @property
    def port(self) -> int:
        return self.hosts[0][1]

    def with_login(
        self, username: str | None = None, password: str | None = None, vhost: str | None = None
    ) -> BrokerAddress:
        return BrokerAddress(
            self.scheme,
            self.hosts,
            self.username if username is None else username,
            self.password if password is None else password,
            self.vhost if vhost is None else vhost,
            self.query,
        )

    def _url(self, hosts: tuple[tuple[str, int], ...]) -> str:
        netloc = ",".join(f"{_host_text(h)}:{p}" for h, p in hosts)
        user = quote(self.username, safe="")
        pwd = quote(self.password, safe="")
        query = f"?{self.query}" if self.query else ""
        return f"{self.scheme}://{user}:{pwd}@{netloc}/{quote(self.vhost, safe='')}{query}"

    def url(self) -> str:
        """The URL naming every node (what to put in ``JIEXU_AMQP_URL``)."""
        return self._url(self.hosts)

    def node_urls(self) -> list[str]:
        """One single-host URL per node, in order: what an AMQP client connects to."""
        return [self._url((h,)) for h in self.hosts]

    def redacted(self) -> str:
        """The URL without its password, for logs and messages."""
        return BrokerAddress(
            self.scheme, self.hosts, self.username, "******", self.vhost, self.query
        ).url()

    def management_urls(self, explicit: str | None = None) -> list[str]:
        return management_urls(self, explicit)


def _host_text(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _split_host(item: str, default_port: int, url: str) -> tuple[str, int]:
    item = item.strip()
    if not item:
        raise BrokerURLError(f"empty host in broker URL {_redact(url)}")
    if item.startswith("["):  # [IPv6]:port
        end = item.find("]")
        if end < 0:
            raise BrokerURLError(f"unclosed [ in broker URL {_redact(url)}")
        host, rest = item[1:end], item[end + 1 :]
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = item.partition(":")
    if not host:
        raise BrokerURLError(f"empty host in broker URL {_redact(url)}")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise BrokerURLError(f"bad port {port_text!r} in broker URL {_redact(url)}")
    return host, int(port_text)


def _redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    login, _, after = rest.rpartition("@")
    user = login.partition(":")[0]
    return f"{scheme}://{user}:******@{after}"


def _parse_one(url: str) -> BrokerAddress:
    scheme, sep, rest = url.strip().partition("://")
    if not sep or scheme not in ("amqp", "amqps"):
        raise BrokerURLError(
            f"not an AMQP URL: {_redact(url)!r} (expected amqp://user:pass@host:port[,host:port...]/vhost)"
        )
    netloc, slash, path_query = rest.partition("/")
    path, _, query = path_query.partition("?")
    if not slash:
        netloc, _, query = netloc.partition("?")
    login, at, hostlist = netloc.rpartition("@")
    if not at:
        hostlist, login = netloc, ""
    user_text, _, pwd_text = login.partition(":")
    default_port = 5671 if scheme == "amqps" else 5672
    hosts = tuple(_split_host(item, default_port, url) for item in hostlist.split(","))
    return BrokerAddress(
        scheme=scheme,
        hosts=hosts,
        username=unquote(user_text) if user_text else "guest",
        password=unquote(pwd_text) if pwd_text else "guest",
        vhost=unquote(path) if path else "/",
        query=query,
    )


def parse_broker_url(text: str) -> BrokerAddress:
    """Parse ``JIEXU_AMQP_URL``: one URL with comma-separated hosts, or comma-separated URLs.

    Raises `BrokerURLError` (a `ValueError`) with a one-line message.
    """
    text = text.strip()
    if not text:
        raise BrokerURLError("empty broker URL")
    pieces = _split_urls(text)
    parsed = [_parse_one(p) for p in pieces]
    first = parsed[0]
    for other in parsed[1:]:
        if (other.scheme, other.username, other.password, other.vhost) != (
            first.scheme,
            first.username,
            first.password,
            first.vhost,
        ):
            raise BrokerURLError(
                "the URLs in the broker list name different schemes, users or vhosts: write one "
                "URL with comma-separated hosts (amqp://user:pass@h1:p1,h2:p2/vhost)"
            )
    hosts: list[tuple[str, int]] = []
    for p in parsed:
        for h in p.hosts:
            if h not in hosts:
                hosts.append(h)
    return BrokerAddress(
        first.scheme, tuple(hosts), first.username, first.password, first.vhost, first.query
    )


def _split_urls(text: str) -> list[str]:
    """``amqp://a,amqp://b`` -> two URLs; ``amqp://u:p@h1,h2/v`` stays one."""
    pieces: list[str] = []
    current = ""
    for item in text.split(","):
        stripped = item.strip()
        if current and (stripped.startswith("amqp://") or stripped.startswith("amqps://")):
            pieces.append(current)
            current = stripped
        else:
            current = f"{current},{item}" if current else stripped
    pieces.append(current)
    return pieces


def management_urls(address: BrokerAddress, explicit: str | None = None) -> list[str]:
    """The management API of each node: ``explicit`` (comma-separated) when given, else derived."""
    if explicit and explicit.strip():
        urls = [u.strip().rstrip("/") for u in explicit.split(",") if u.strip()]
        for u in urls:
            if not (u.startswith("http://") or u.startswith("https://")):
                raise BrokerURLError(f"not an HTTP URL in JIEXU_MANAGEMENT_URL: {u!r}")
        return urls
    scheme = "https" if address.scheme == "amqps" else "http"
    return [
        f"{scheme}://{_host_text(host)}:{_management_port(port)}" for host, port in address.hosts
    ]


def _management_port(amqp_port: int) -> int:
    if amqp_port in (5671, 5672):
        return 15672 if amqp_port == 5672 else 15671
    derived = amqp_port + MANAGEMENT_PORT_OFFSET
    return derived if derived < 65536 else 15672
