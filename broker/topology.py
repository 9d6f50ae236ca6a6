"""The wire topology: exchanges, per-agency queues, broker users and permissions.

One description (`declarations`) feeds three ways of making it real, so they cannot drift:

- `apply_topology` provisions a vhost through the management API (idempotent, users included);
- `export_definitions` writes the same thing as a RabbitMQ definitions document;
- `declare_topology` declares exchanges, queues and bindings over AMQP (an administrator's channel;
  agency users have no configure permission and only check their queues passively).

The users' permissions, passwords and secrets files are in `broker.users`, and the quorum queues'
members as the cluster sees them in `broker.replicas`; both are re-exported from here.

Layout (names in `broker.names`)::

    EXCHANGE (topic, alternate-exchange UNROUTABLE_EXCHANGE)
      --agency.{code}.#-->  inbox_queue(code)   quorum, x-delivery-limit, dead-letters to DLX/{code}
    UNROUTABLE_EXCHANGE (fanout) --> UNROUTABLE_QUEUE   quorum
    DLX (direct) --{code}--> dlq_queue(code)    quorum
    RETRY_EXCHANGE (direct)
      --delay.{code}.{ms}--> retry_queue(code, ms)  quorum, x-message-ttl ms, dead-letters
                                                    (at-least-once) to RETRY_EXCHANGE/inbox.{code}
      --inbox.{code}-->      inbox_queue(code)

Every queue is a quorum queue, so on a cluster every message survives the loss of a minority of
nodes (retries and unroutable messages included: a classic queue lives on one node only). Each
is declared with an explicit initial group size (``x-quorum-initial-group-size``, 3 by default;
the broker uses every node when it has fewer, so one node gets one member) and
``x-queue-leader-locator: balanced`` (RabbitMQ 3.10+), so leaders spread over the nodes instead
of all landing on the node whose management API declared them. Quorum queues expire messages by
TTL since 3.10; retry queues dead-letter ``at-least-once`` (which needs ``x-overflow:
reject-publish``): a retry is moved back to the inbox only once the inbox has confirmed it.

A queue's arguments cannot change once declared: a vhost provisioned before these arguments
(classic retry queues, no group size) fails `apply_topology` with "inequivalent arg"; see
docs/operations-cluster.md for moving it.

Only the broker writes to DLX and RETRY_EXCHANGE; an agency publishes its dead letters, retries and
replays to its own two exchanges, which no other agency may write to. Every queue has length and
byte limits with ``x-overflow: reject-publish`` (a publisher with confirms gets a nack; a broker
dead-lettering into a full queue is dropped, so the limits are far above normal use).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from broker.management import ManagementClient
from broker.names import (
    DLX,
    EXCHANGE,
    RECONCILER_CODE,
    RETRY_EXCHANGE,
    UNROUTABLE_EXCHANGE,
    UNROUTABLE_QUEUE,
    agency_dlx,
    agency_retry_exchange,
    agency_user,
    dlq_queue,
    inbox_binding,
    inbox_queue,
    retry_delay_key,
    retry_inbox_key,
    retry_queue,
)
from broker.replicas import QueueReplicas, inbox_replicas, queue_replicas
from broker.users import (
    AgencyCredential,
    AgencyCredentials,
    Permissions,
    _check_code,
    agency_permissions,
    generate_password,
    load_agency_secret,
    load_credentials,
    rabbit_password_hash,
    secret_path,
    verify_rabbit_password_hash,
    write_credentials,
)

__all__ = [
    "DEFAULT_DELIVERY_LIMIT",
    "DEFAULT_GROUP_SIZE",
    "DEFAULT_LEADER_LOCATOR",
    "DEFAULT_RETRY_DELAYS_MS",
    "AgencyCredential",
    "AgencyCredentials",
    "BindingDecl",
    "Declarations",
    "ExchangeDecl",
    "Permissions",
    "QueueDecl",
    "QueueReplicas",
    "TopologySpec",
    "agency_permissions",
    "apply_topology",
    "declarations",
    "declare_topology",
    "delete_agency_users",
    "export_definitions",
    "generate_password",
    "inbox_arguments",
    "inbox_replicas",
    "load_agency_secret",
    "load_credentials",
    "queue_replicas",
    "quorum_arguments",
    "rabbit_password_hash",
    "retry_arguments",
    "secret_path",
    "verify_rabbit_password_hash",
    "write_credentials",
]

log = structlog.get_logger("jiexu.broker.topology")

DEFAULT_RETRY_DELAYS_MS: tuple[int, ...] = (1000, 5000, 30000)
DEFAULT_DELIVERY_LIMIT = 20
DEFAULT_GROUP_SIZE = 3
DEFAULT_LEADER_LOCATOR = "balanced"
DEFAULT_MAX_QUEUE_LENGTH = 100_000  # messages per queue before publishes are refused
DEFAULT_MAX_QUEUE_BYTES = 1 << 30  # body bytes per queue (1 GiB) before publishes are refused

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
    group_size: int = DEFAULT_GROUP_SIZE
    """Quorum members per queue (``x-quorum-initial-group-size``): 3 survives one lost node, 5
    two; the broker uses every node when it has fewer."""
    leader_locator: str = DEFAULT_LEADER_LOCATOR
    max_queue_length: int = DEFAULT_MAX_QUEUE_LENGTH
    max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES

    def __post_init__(self) -> None:
        for code in self.agency_codes:
            _check_code(code)
        if not self.retry_delays_ms or any(ms <= 0 for ms in self.retry_delays_ms):
            raise ValueError(f"retry delays must be positive milliseconds: {self.retry_delays_ms}")
        if len(set(self.retry_delays_ms)) != len(self.retry_delays_ms):
            raise ValueError(f"retry delays repeat: {self.retry_delays_ms}")
        if self.delivery_limit < 1:
            raise ValueError(f"delivery limit must be >= 1, got {self.delivery_limit}")
        if self.group_size < 1:
            raise ValueError(f"quorum group size must be >= 1, got {self.group_size}")
        if self.leader_locator not in ("balanced", "client-local"):
            raise ValueError(
                f"leader locator must be 'balanced' or 'client-local', got {self.leader_locator!r}"
            )
        if min(self.max_queue_length, self.max_queue_bytes) < 1:
            raise ValueError("queue limits must be >= 1")

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


def limit_arguments(spec: TopologySpec) -> dict[str, Any]:
    """Length and byte limits; a publish beyond them is nacked (the publisher hears it)."""
    length, size = spec.max_queue_length, spec.max_queue_bytes
    return {"x-max-length": length, "x-max-length-bytes": size, "x-overflow": "reject-publish"}


def quorum_arguments(spec: TopologySpec) -> dict[str, Any]:
    """What every queue of ``spec`` is: a quorum queue of ``group_size`` members, leader balanced,
    with the length and byte limits."""
    return {
        "x-queue-type": "quorum",
        "x-quorum-initial-group-size": spec.group_size,
        "x-queue-leader-locator": spec.leader_locator,
        **limit_arguments(spec),
    }


def inbox_arguments(code: str, spec: TopologySpec) -> dict[str, Any]:
    return {
        **quorum_arguments(spec),
        "x-delivery-limit": spec.delivery_limit,
        "x-dead-letter-exchange": DLX,
        "x-dead-letter-routing-key": code,
    }


def retry_arguments(code: str, delay_ms: int, spec: TopologySpec) -> dict[str, Any]:
    return {
        **quorum_arguments(spec),
        "x-message-ttl": delay_ms,
        "x-dead-letter-exchange": RETRY_EXCHANGE,
        "x-dead-letter-routing-key": retry_inbox_key(code),
        # Moved back only once the inbox confirmed it (at-most-once, the default, could drop a
        # retry whose inbox is electing a leader); this strategy needs reject-publish overflow.
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def declarations(spec: TopologySpec) -> Declarations:
    """Every exchange, queue and binding of ``spec``, in the order they must be declared."""
    exchanges: tuple[ExchangeDecl, ...] = (
        ExchangeDecl(UNROUTABLE_EXCHANGE, "fanout"),
        ExchangeDecl(EXCHANGE, "topic", {"alternate-exchange": UNROUTABLE_EXCHANGE}),
        ExchangeDecl(DLX, "direct"),
        ExchangeDecl(RETRY_EXCHANGE, "direct"),
    )
    for code in spec.codes:
        exchanges += (
            ExchangeDecl(agency_dlx(code), "direct"),
            ExchangeDecl(agency_retry_exchange(code), "direct"),
        )
    queues: list[QueueDecl] = [QueueDecl(UNROUTABLE_QUEUE, quorum_arguments(spec))]
    bindings: list[BindingDecl] = [BindingDecl(UNROUTABLE_EXCHANGE, UNROUTABLE_QUEUE, "")]
    for code in spec.codes:
        inbox = inbox_queue(code)
        queues.append(QueueDecl(inbox, inbox_arguments(code, spec)))
        bindings.append(BindingDecl(EXCHANGE, inbox, inbox_binding(code)))
        bindings.append(BindingDecl(RETRY_EXCHANGE, inbox, retry_inbox_key(code)))
        bindings.append(BindingDecl(agency_retry_exchange(code), inbox, retry_inbox_key(code)))
        # Dead letters are the messages that carry money and need an operator; they must
        # survive the loss of a cluster node like the inbox they came from.
        queues.append(QueueDecl(dlq_queue(code), quorum_arguments(spec)))
        bindings.append(BindingDecl(DLX, dlq_queue(code), code))
        bindings.append(BindingDecl(agency_dlx(code), dlq_queue(code), code))
        for ms in spec.retry_delays_ms:
            queues.append(QueueDecl(retry_queue(code, ms), retry_arguments(code, ms, spec)))
            bindings.append(BindingDecl(RETRY_EXCHANGE, retry_queue(code, ms), retry_delay_key(code, ms)))
            bindings.append(
                BindingDecl(agency_retry_exchange(code), retry_queue(code, ms), retry_delay_key(code, ms))
            )
    return Declarations(exchanges, tuple(queues), tuple(bindings))


# -- provisioning ---------------------------------------------------------------------------


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
