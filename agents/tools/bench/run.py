"""Running the sections: a throwaway vhost with three agencies, their keys and directory, the signed
bodies; the figures merged and the ratios derived."""

from __future__ import annotations

import asyncio
import platform
import uuid
from collections.abc import Sequence
from typing import Any

import aio_pika
import structlog

from agents.tools.bench.context import (
    HOP,
    QUORUM,
    RAW_PUBLISH_QUEUE,
    RAW_SINK_QUEUE,
    RAW_SOURCE_QUEUE,
    SENDER,
    SINK,
    BenchConfig,
    BenchContext,
    Section,
    sample_document,
)
from agents.tools.bench.hop import codec, signed_hop, transport, transport_steps
from agents.tools.bench.raw import raw_hop, raw_publish
from broker.directory import AgencyDirectory, AgencyEntry, DirectoryBankAccount
from broker.provider import BrokerEndpoint
from broker.signing import (
    Ed25519PrivateKey,
    generate_private_key,
    public_key_to_raw_b64,
    sign_envelope,
)
from broker.topology import TopologySpec, apply_topology, delete_agency_users
from schemas.envelope import Envelope
from schemas.registry import envelope_for

__all__ = ["SECTIONS", "run_bench"]

log = structlog.get_logger("jiexu.bench")

SECTIONS: list[Section] = [raw_publish, raw_hop, signed_hop, transport, transport_steps, codec]


# -- running --------------------------------------------------------------------------------------


def _directory_entry(code: str, key: Ed25519PrivateKey) -> AgencyEntry:
    return AgencyEntry(
        code=code,
        name=f"bench agency {code}",
        supported_versions={"information_form": (1, 2)},
        public_key=public_key_to_raw_b64(key),
        bank_account=DirectoryBankAccount(
            bank_name="bench bank",
            bank_code="102100099996",
            account_name=f"bench {code}",
            account_number=f"6222{code}000001",
        ),
    )


def _envelopes(count: int, key: Ed25519PrivateKey) -> list[Envelope]:
    document = sample_document()
    return [
        sign_envelope(
            envelope_for(document, sender=SENDER, recipient=HOP, case_id=uuid.uuid4()), key
        )
        for _ in range(count)
    ]


async def _run_sections(ctx: BenchContext, sections: Sequence[Section]) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for section in sections:
        log.info("bench_section_started", section=section.__name__)
        figures.update(await section(ctx))
    return figures


_RATIOS = (
    ("ratio_transport_vs_raw", "transport_hop_msgs_per_s", "raw_hop_msgs_per_s"),
    ("ratio_signed_hop_vs_raw", "signed_hop_msgs_per_s", "raw_hop_msgs_per_s"),
    ("ratio_publish_vs_raw", "transport_publish_msgs_per_s", "raw_publish_msgs_per_s"),
)
"""(ratio, jiexu's figure, the raw figure it is compared with)"""


def run_bench(
    endpoint: BrokerEndpoint,
    config: BenchConfig | None = None,
    sections: Sequence[Section] | None = None,
) -> dict[str, Any]:
    """Run every section on ``endpoint`` in a throwaway vhost; return the figures and ratios."""
    config = config or BenchConfig()
    run_id = uuid.uuid4().hex[:8]
    vhost = f"jiexu-bench-{run_id}"
    spec = TopologySpec(agency_codes=(SENDER, HOP, SINK), user_prefix=f"bench{run_id}-")
    keys = {code: generate_private_key() for code in (SENDER, HOP, SINK)}
    directory = AgencyDirectory([_directory_entry(code, keys[code]) for code in keys])
    with endpoint.management() as api:
        api.create_vhost(vhost)
        api.set_permissions(vhost, endpoint.username, ".*", ".*", ".*")
        try:
            credentials = apply_topology(api, vhost, spec)
            for queue in (RAW_PUBLISH_QUEUE, RAW_SOURCE_QUEUE, RAW_SINK_QUEUE):
                api.declare_queue(vhost, queue, QUORUM)
            ctx = BenchContext(
                config=config,
                endpoint=endpoint,
                vhost=vhost,
                spec=spec,
                credentials=credentials,
                keys=keys,
                directory=directory,
                envelopes=_envelopes(config.messages, keys[SENDER]),
            )
            figures = asyncio.run(_run_sections(ctx, sections or SECTIONS))
        finally:
            api.delete_vhost(vhost)
            delete_agency_users(api, spec)
    body_sizes = [len(b) for b in ctx.bodies[:100]]
    result: dict[str, Any] = {
        "broker": endpoint.source,
        "messages": config.messages,
        "body_bytes": round(sum(body_sizes) / max(len(body_sizes), 1)),
        "in_flight": config.in_flight,
        "prefetch": config.prefetch,
        "python": platform.python_version(),
        "aio_pika": aio_pika.__version__,
        **figures,
    }
    for ratio, ours, raw in _RATIOS:
        if figures.get(raw) and ours in figures:
            result[ratio] = round(figures[ours] / figures[raw], 3)
    return result
