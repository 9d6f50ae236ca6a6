"""`jiexu bench`: the raw aio-pika ceiling and jiexu's figures, in one run, one broker.

Every section runs against the same broker, in a vhost made for the run, on the same bodies (the
encoded, signed envelopes jiexu itself sends), so the ratios compare like with like:

* ``raw_publish``   aio-pika publishing with confirms, many in flight, into a quorum queue;
* ``raw_hop``       aio-pika consume (prefetch 200) -> ``json.loads`` -> publish with confirm -> ack;
* ``signed_hop``    the raw hop on jiexu's connection and publisher with only the signature work
                    added (verify what came in, sign the answer): the floor under ``transport``;
* ``transport``     jiexu's `Publisher` (sign, confirm) filling an inbox, then jiexu's `Consumer` hop:
                    decode, check, verify, validate, handler builds and signs a new envelope,
                    publish with confirm, ack;
* ``transport_steps`` the same hop again with each step timed where it runs (CPU per message);
* ``codec``         the same steps on an idle core, no broker;
* the full flow     whole transfers through agents running as separate processes (`flow_section`).

A section is an async function taking the `BenchContext` and returning figures; `SECTIONS` lists
them in order, and `run_bench` merges their figures and derives the ratios; `flow_section` is
appended to them when the full flow runs.

Modules: `context` (what every section gets, the shared timers), `raw` (the aio-pika ceiling),
`hop` (jiexu's transport, its steps, the codec), `run` (the vhost, the sections, the ratios);
for the full flow `processes` (agents as child processes), `files` (reading a world's SQLite
files), `world` (one provisioned world and its front office) and `flow` (the two measurements, and the
flow per number of replicas per agency on PostgreSQL, `replica_flow_section`; `pgfiles` reads such
a world's databases).
"""

from agents.tools.bench.context import BenchConfig, BenchContext, Section, sample_document
from agents.tools.bench.flow import (
    add_flow_ratios,
    flow_section,
    replica_flow_section,
    run_flow,
    run_replica_flows,
)
from agents.tools.bench.hop import codec, signed_hop, transport, transport_steps
from agents.tools.bench.processes import settings_env
from agents.tools.bench.raw import raw_hop, raw_publish
from agents.tools.bench.run import SECTIONS, run_bench
from agents.tools.bench.world import FLOW_RETRY_DELAYS_MS, FlowConfig

__all__ = [
    "FLOW_RETRY_DELAYS_MS",
    "SECTIONS",
    "BenchConfig",
    "BenchContext",
    "FlowConfig",
    "Section",
    "add_flow_ratios",
    "codec",
    "flow_section",
    "raw_hop",
    "raw_publish",
    "replica_flow_section",
    "run_bench",
    "run_flow",
    "run_replica_flows",
    "sample_document",
    "settings_env",
    "signed_hop",
    "transport",
    "transport_steps",
]
