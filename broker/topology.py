"""The wire topology: exchanges, per-agency queues, broker users and permissions.

One description (`declarations`) feeds three ways of making it real, so they cannot drift:

- `apply_topology` provisions a vhost through the management API (idempotent, users included);
- `export_definitions` writes the same thing as a RabbitMQ definitions document;
- `declare_topology` declares exchanges, queues and bindings over AMQP (an administrator's channel;
  agency users have no configure permission and only check their queues passively).

Layout (names in `broker.names`)::

    EXCHANGE (topic, alternate-exchange UNROUTABLE_EXCHANGE)
      --agency.{code}.#-->  inbox_queue(code)   quorum, x-delivery-limit, dead-letters to DLX/{code}
    UNROUTABLE_EXCHANGE (fanout) --> UNROUTABLE_QUEUE
    DLX (direct) --{code}--> dlq_queue(code)    quorum
    RETRY_EXCHANGE (direct)
      --delay.{code}.{ms}--> retry_queue(code, ms)  classic, x-message-ttl ms,
                                                    dead-letters to RETRY_EXCHANGE/inbox.{code}
      --inbox.{code}-->      inbox_queue(code)
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from broker.files import private_dir
from broker.management import ManagementClient
from broker.names import (
    DLX,
    EXCHANGE,
    RECONCILER_CODE,
    RETRY_EXCHANGE,
    UNROUTABLE_EXCHANGE,
    UNROUTABLE_QUEUE,
    agency_user,
    dlq_queue,
    inbox_binding,
    inbox_queue,
    retry_delay_key,
    retry_inbox_key,
    retry_queue,
)

__all__ = [
    "DEFAULT_DELIVERY_LIMIT",
    "DEFAULT_RETRY_DELAYS_MS",
    "AgencyCredential",
    "AgencyCredentials",
    "BindingDecl",
    "Declarations",
    "ExchangeDecl",
    "Permissions",
    "QueueDecl",
    "TopologySpec",
    "agency_permissions",
    "apply_topology",
    "declarations",
    "declare_topology",
    "delete_agency_users",
    "export_definitions",
    "generate_password",
    "load_agency_secret",
    "load_credentials",
    "rabbit_password_hash",
    "secret_path",
    "verify_rabbit_password_hash",
    "write_credentials",
]

log = structlog.get_logger("jiexu.broker.topology")

DEFAULT_RETRY_DELAYS_MS: tuple[int, ...] = (1000, 5000, 30000)
DEFAULT_DELIVERY_LIMIT = 20

_CODE_RE = re.compile(r"^[0-9]{6}$")


def _check_code(code: str) -> str:
    if not _CODE_RE.fullmatch(code):
        raise ValueError(f"agency code must be 6 digits, got {code!r}")
    return code


@dataclass(frozen=True)
class TopologySpec:
    """What to provision: which agencies, which retry delays, how many deliveries before the DLQ.

    ``user_prefix`` is prepended to every broker user name (broker users are global, not per
    vhost: tests and side-by-side deployments on one broker keep theirs apart with it).
    """

    agency_codes: tuple[str, ...]
    retry_delays_ms: tuple[int, ...] = DEFAULT_RETRY_DELAYS_MS
    delivery_limit: int = DEFAULT_DELIVERY_LIMIT
    include_reconciler: bool = True
    user_prefix: str = ""

    def __post_init__(self) -> None:
        for code in self.agency_codes:
            _check_code(code)
        if not self.retry_delays_ms or any(ms <= 0 for ms in self.retry_delays_ms):
            raise ValueError(f"retry delays must be positive milliseconds: {self.retry_delays_ms}")
        if len(set(self.retry_delays_ms)) != len(self.retry_delays_ms):
            raise ValueError(f"retry delays repeat: {self.retry_delays_ms}")
        if self.delivery_limit < 1:
            raise ValueError(f"delivery limit must be >= 1, got {self.delivery_limit}")

    @property
    def codes(self) -> tuple[str, ...]:
        """Every code that gets queues and a user: the agencies and (by default) the reconciler."""
        codes = set(self.agency_codes)
        if self.include_reconciler:
            codes.add(RECONCILER_CODE)
        return tuple(sorted(codes))

    def user(self, code: str) -> str:
        return agency_user(code, self.user_prefix)


# -- declarations ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ExchangeDecl:
    name: str
    type: str
    arguments: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class QueueDecl:
    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BindingDecl:
    exchange: str
    queue: str
    routing_key: str


@dataclass(frozen=True)
class Declarations:
    exchanges: tuple[ExchangeDecl, ...]
    queues: tuple[QueueDecl, ...]
    bindings: tuple[BindingDecl, ...]


def inbox_arguments(code: str, delivery_limit: int) -> dict[str, Any]:
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": delivery_limit,
        "x-dead-letter-exchange": DLX,
        "x-dead-letter-routing-key": code,
    }


def declarations(spec: TopologySpec) -> Declarations:
    """Every exchange, queue and binding of ``spec``, in the order they must be declared."""
    exchanges = (
        ExchangeDecl(UNROUTABLE_EXCHANGE, "fanout"),
        ExchangeDecl(EXCHANGE, "topic", {"alternate-exchange": UNROUTABLE_EXCHANGE}),
        ExchangeDecl(DLX, "direct"),
        ExchangeDecl(RETRY_EXCHANGE, "direct"),
    )
    queues: list[QueueDecl] = [QueueDecl(UNROUTABLE_QUEUE)]
    bindings: list[BindingDecl] = [BindingDecl(UNROUTABLE_EXCHANGE, UNROUTABLE_QUEUE, "")]
    for code in spec.codes:
        inbox = inbox_queue(code)
        queues.append(QueueDecl(inbox, inbox_arguments(code, spec.delivery_limit)))
        bindings.append(BindingDecl(EXCHANGE, inbox, inbox_binding(code)))
        bindings.append(BindingDecl(RETRY_EXCHANGE, inbox, retry_inbox_key(code)))
        # Quorum: dead letters are the messages that carry money and need an operator; they
        # must survive the loss of a cluster node like the inbox they came from.
        queues.append(QueueDecl(dlq_queue(code), {"x-queue-type": "quorum"}))
        bindings.append(BindingDecl(DLX, dlq_queue(code), code))
        for ms in spec.retry_delays_ms:
            # Classic: quorum queues on 3.10 do not expire messages by TTL.
            queues.append(
                QueueDecl(
                    retry_queue(code, ms),
                    {
                        "x-queue-type": "classic",
                        "x-message-ttl": ms,
                        "x-dead-letter-exchange": RETRY_EXCHANGE,
                        "x-dead-letter-routing-key": retry_inbox_key(code),
                    },
                )
            )
            bindings.append(BindingDecl(RETRY_EXCHANGE, retry_queue(code, ms), retry_delay_key(code, ms)))
    return Declarations(exchanges, tuple(queues), tuple(bindings))


# -- users and permissions ------------------------------------------------------------------


@dataclass(frozen=True)
class Permissions:
    """A user's permission regexes on one vhost (RabbitMQ matches them unanchored: anchor them)."""

    configure: str
    write: str
    read: str


def agency_permissions(code: str) -> Permissions:
    """An agency may publish to the three exchanges and read only its own queues; declare nothing.

    ``write`` covers EXCHANGE (send), DLX (dead-letter with a reason) and RETRY_EXCHANGE (retry after
    a delay, replay); the default exchange is not writable, so no agency can address another's
    queue directly. ``read`` names this code exactly, so 110000 never reads 1100001 or 110000x.
    """
    _check_code(code)
    write = "^(" + "|".join(re.escape(x) for x in (EXCHANGE, DLX, RETRY_EXCHANGE)) + ")$"
    read = r"^jiexu\.(inbox|dlq|retry)\." + re.escape(code) + r"(\..*)?$"
    return Permissions(configure="^$", write=write, read=read)


@dataclass(frozen=True)
class AgencyCredential:
    """The broker login of one agency (its agent connects with it, never as guest)."""

    code: str
    username: str
    password: str = field(repr=False)


AgencyCredentials = dict[str, AgencyCredential]
"""Agency code -> its broker login."""


def generate_password() -> str:
    return secrets.token_urlsafe(24)


def rabbit_password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256``: base64(salt4 + sha256(salt4 + password))."""
    salt = secrets.token_bytes(4) if salt is None else salt
    if len(salt) != 4:
        raise ValueError("RabbitMQ password salts are 4 bytes")
    digest = hashlib.sha256(salt + password.encode("utf-8")).digest()
    return base64.b64encode(salt + digest).decode("ascii")


def verify_rabbit_password_hash(password: str, password_hash: str) -> bool:
    raw = base64.b64decode(password_hash)
    return secrets.compare_digest(rabbit_password_hash(password, raw[:4]), password_hash)


def _credentials_for(
    spec: TopologySpec, credentials: Mapping[str, str] | None
) -> AgencyCredentials:
    given = dict(credentials or {})
    unknown = set(given) - set(spec.codes)
    if unknown:
        raise ValueError(f"credentials for codes not in the topology: {sorted(unknown)}")
    return {
        code: AgencyCredential(code, spec.user(code), given.get(code) or generate_password())
        for code in spec.codes
    }


# -- provisioning ---------------------------------------------------------------------------


def apply_topology(
    api: ManagementClient,
    vhost: str,
    spec: TopologySpec,
    credentials: Mapping[str, str] | None = None,
    *,
    keep: Collection[str] = (),
) -> AgencyCredentials:
    """Provision ``spec`` on ``vhost`` through the management API; safe to run again.

    ``keep``: codes whose existing broker user is left as it is (its password untouched; only its
    permissions on ``vhost`` are set). `broker.provisioning.apply_topology_safely` decides them.

    ``credentials`` maps agency code -> password; a code without one gets a generated password,
    which *replaces* that user's current password (pass the previous ones to keep them; the CLI does
    that from its secrets directory). Queues are declared with fixed arguments: running it over a
    queue declared with different ones fails with the broker's "inequivalent arg" message rather
    than silently keeping the old behaviour.
    """
    decl = declarations(spec)
    if vhost not in api.list_vhosts():
        api.create_vhost(vhost)
    for exchange in decl.exchanges:
        api.declare_exchange(vhost, exchange.name, exchange.type, dict(exchange.arguments))
    for queue in decl.queues:
        api.declare_queue(vhost, queue.name, dict(queue.arguments))
    for binding in decl.bindings:
        api.bind_queue(vhost, binding.exchange, binding.queue, binding.routing_key)
    result = _credentials_for(spec, credentials)
    for code, cred in result.items():
        if code not in keep:
            api.put_user(cred.username, cred.password)
        perms = agency_permissions(code)
        api.set_permissions(vhost, cred.username, perms.configure, perms.write, perms.read)
    log.info(
        "topology_applied",
        vhost=vhost,
        agencies=len(spec.codes),
        queues=len(decl.queues),
        bindings=len(decl.bindings),
    )
    return result


def delete_agency_users(api: ManagementClient, spec: TopologySpec) -> None:
    """Remove the broker users of ``spec`` (queues stay; delete the vhost to remove those)."""
    for code in spec.codes:
        api.delete_user(spec.user(code))


def export_definitions(
    spec: TopologySpec, vhost: str, credentials: Mapping[str, str]
) -> dict[str, Any]:
    """A RabbitMQ definitions document equivalent to `apply_topology` (load it at boot or POST it).

    ``credentials`` must hold a password for every code in ``spec.codes``; only salted hashes
    are written.
    """
    missing = sorted(set(spec.codes) - set(credentials))
    if missing:
        raise ValueError(f"no password for agencies {missing}: generate them first")
    creds = _credentials_for(spec, credentials)
    decl = declarations(spec)
    return {
        "users": [
            {
                "name": cred.username,
                "password_hash": rabbit_password_hash(cred.password),
                "hashing_algorithm": "rabbit_password_hashing_sha256",
                "tags": [],
                "limits": {},
            }
            for cred in creds.values()
        ],
        "vhosts": [{"name": vhost}],
        "permissions": [
            {
                "user": cred.username,
                "vhost": vhost,
                "configure": perms.configure,
                "write": perms.write,
                "read": perms.read,
            }
            for cred in creds.values()
            for perms in (agency_permissions(cred.code),)
        ],
        "topic_permissions": [],
        "parameters": [],
        "global_parameters": [],
        "policies": [],
        "exchanges": [
            {
                "name": x.name,
                "vhost": vhost,
                "type": x.type,
                "durable": True,
                "auto_delete": False,
                "internal": False,
                "arguments": dict(x.arguments),
            }
            for x in decl.exchanges
        ],
        "queues": [
            {
                "name": q.name,
                "vhost": vhost,
                "durable": True,
                "auto_delete": False,
                "arguments": dict(q.arguments),
            }
            for q in decl.queues
        ],
        "bindings": [
            {
                "source": b.exchange,
                "vhost": vhost,
                "destination": b.queue,
                "destination_type": "queue",
                "routing_key": b.routing_key,
                "arguments": {},
            }
            for b in decl.bindings
        ],
    }


async def declare_topology(channel: Any, spec: TopologySpec) -> None:
    """Declare exchanges, queues and bindings of ``spec`` over AMQP on an aio-pika channel.

    Needs configure permission (an administrator's connection: the demo, tests, a reconnect hook);
    agency users cannot declare and should check their queues with a passive declare instead.
    """
    import aio_pika

    decl = declarations(spec)
    exchanges: dict[str, Any] = {}
    for x in decl.exchanges:
        exchanges[x.name] = await channel.declare_exchange(
            x.name, aio_pika.ExchangeType(x.type), durable=True, arguments=dict(x.arguments)
        )
    queues: dict[str, Any] = {}
    for q in decl.queues:
        queues[q.name] = await channel.declare_queue(q.name, durable=True, arguments=dict(q.arguments))
    for b in decl.bindings:
        await queues[b.queue].bind(exchanges[b.exchange], routing_key=b.routing_key)


# -- the secrets directory ------------------------------------------------------------------


def secret_path(directory: Path, code: str) -> Path:
    return directory / f"{_check_code(code)}.broker.json"


def write_credentials(
    directory: Path,
    credentials: Mapping[str, AgencyCredential],
    vhost: str,
    amqp_urls: Mapping[str, str] | None = None,
) -> list[Path]:
    """Write one ``{code}.broker.json`` per agency, readable by its owner only (0600)."""
    private_dir(directory)
    written: list[Path] = []
    for code, cred in sorted(credentials.items()):
        body: dict[str, str] = {
            "agency": code,
            "username": cred.username,
            "password": cred.password,
            "vhost": vhost,
        }
        if amqp_urls and code in amqp_urls:
            body["amqp_url"] = amqp_urls[code]
        path = secret_path(directory, code)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)
            json.dump(body, handle, ensure_ascii=False, indent=2)
            handle.write("\n")
        written.append(path)
    return written


def load_agency_secret(path: Path) -> dict[str, str]:
    """One secrets file as written by `write_credentials` (keys: agency, username, password, vhost,
    and amqp_url when known)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read broker secret {path}: {exc}") from exc
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), str) for k in ("agency", "username", "password")
    ):
        raise ValueError(f"{path}: expected an object with agency, username and password")
    return {str(k): str(v) for k, v in data.items()}


def load_credentials(directory: Path, codes: Iterable[str] | None = None) -> AgencyCredentials:
    """The credentials already in ``directory`` (only ``codes`` when given; missing files skipped)."""
    result: AgencyCredentials = {}
    paths = (
        [secret_path(directory, c) for c in codes]
        if codes is not None
        else sorted(directory.glob("*.broker.json"))
    )
    for path in paths:
        if not path.exists():
            continue
        data = load_agency_secret(path)
        result[data["agency"]] = AgencyCredential(data["agency"], data["username"], data["password"])
    return result
