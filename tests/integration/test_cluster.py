"""The exchange on a real 3-node RabbitMQ cluster: nodes killed, frozen, stopped, and nothing lost.

Every test runs on the session's `rabbitmq_cluster` (three local ``rabbitmq-server`` nodes, see
`broker.cluster`, or containers of the offline image with ``JIEXU_CLUSTER=docker``;
test_cluster_docker runs one flow on containers whatever it says); each flow test runs two
agencies' agents as real ``jiexu agent`` processes whose ``JIEXU_AMQP_URL`` names all three nodes,
moves a few hundred transfers between them, and takes nodes away in the middle.
The checks at the end are those of the crash tests
(`test_agent_crash`): every case completed at both ends, each balance debited or paid out once and
credited once, the money in both ledgers adds up to the fen, nothing dead-lettered, and the agents
drain on SIGTERM within the bound (an agent still running at the bound is SIGKILLed, and its exit
status then fails the test).

Select them with ``-m cluster``; ``JIEXU_CLUSTER_TRANSFERS`` changes the size of a flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import pytest
from structlog.testing import capture_logs

from agents.service.process import OpenedService, open_service
from agents.tools.provision import AgencyProfile, Provisioned, provision
from agents.tools.seed import make_mover
from broker.cluster import AnyCluster
from broker.connection import BrokerUnreachable, connect
from broker.management import ManagementClient
from broker.names import UNROUTABLE_QUEUE, inbox_queue
from broker.publisher import Publisher
from broker.pytest_plugin import TestVhost
from broker.topology import (
    TopologySpec,
    apply_topology,
    delete_agency_users,
    inbox_replicas,
    queue_replicas,
)
from schemas.common import InsuranceType
from tests.integration.agent_processes import AgentRun, start_agent
from tests.integration.agent_world import TERMINAL
from tests.integration.test_agent_crash import (
    JIUJIANG,
    RETRY_DELAYS_MS,
    ZHENGZHOU,
    Transfer,
    _all_terminal,
    _application,
    _check_books,
    _leftovers,
    _outboxes_empty,
    _seed,
)
from tests.integration.transport_support import eventually

pytestmark = [pytest.mark.integration, pytest.mark.cluster, pytest.mark.timeout(900)]

TRANSFERS = int(os.environ.get("JIEXU_CLUSTER_TRANSFERS", "200"))
WAIT_S = 300.0  # a bound on waiting for an outcome, never asserted as a duration
DRAIN_BOUND_S = 60.0  # SIGTERM -> exit; past it the agent is SIGKILLed and the test fails
PAUSE_S = 35.0
"""How long a node stays frozen: past the client heartbeat's grace (18 s) and the nodes' net tick
(20 s in the fixture), so the connection is abandoned and the cluster really partitions."""


# -- the cluster itself -----------------------------------------------------------------------


def test_the_fixture_runs_three_nodes_joined_into_one_cluster_each_answering(
    rabbitmq_cluster: AnyCluster,
) -> None:
    rabbitmq_cluster.heal()
    names = {n.name for n in rabbitmq_cluster.nodes}
    assert len(names) == 3
    for node in rabbitmq_cluster.nodes:
        with node.management() as api:
            seen = {n["name"] for n in api.list_nodes() if n.get("running")}
            assert seen == names, node.short
            assert not any(n.get("partitions") for n in api.list_nodes()), node.short
    assert rabbitmq_cluster.amqp_url().count(",") == 2


def test_a_topology_applied_on_a_cluster_has_three_members_per_queue_and_balanced_leaders(
    rabbitmq_cluster: AnyCluster, cluster_vhost: TestVhost
) -> None:
    codes = ("110000", "440300", "360400", "410100", "320100")
    spec = TopologySpec(agency_codes=codes, user_prefix=f"t{uuid.uuid4().hex[:6]}-")
    try:
        with cluster_vhost.management() as api:
            apply_topology(api, cluster_vhost.name, spec)
            replicas = queue_replicas(api, cluster_vhost.name)
            queues = {q["name"]: q for q in api.list_queues(cluster_vhost.name)}
        # Every queue (inboxes, dead letters, retries, unroutable) is a quorum queue on all nodes.
        assert {q["type"] for q in queues.values()} == {"quorum"}
        assert len(replicas) == len(queues)
        node_names = {n.name for n in rabbitmq_cluster.nodes}
        for r in replicas:
            assert set(r.members) == node_names, r
            assert r.missing == ()
        assert UNROUTABLE_QUEUE in {r.name for r in replicas}
        # Leaders spread over the nodes, not all on the node whose API declared them.
        leaders: dict[str | None, int] = {}
        for r in replicas:
            leaders[r.leader] = leaders.get(r.leader, 0) + 1
        assert set(leaders) == node_names, leaders
        assert max(leaders.values()) - min(leaders.values()) <= 1, leaders
        inboxes = [r for r in replicas if r.name.startswith("jiexu.inbox.")]
        assert len({r.leader for r in inboxes}) == 3
        print(f"\nleaders per node: {leaders}")

        # A node lost: its membership shows as missing, every queue keeps a leader.
        victim = rabbitmq_cluster.node(2)
        rabbitmq_cluster.kill(2)
        with cluster_vhost.management() as api:
            after = inbox_replicas(api, cluster_vhost.name, spec.codes)

            def settled() -> bool:
                nonlocal after
                after = inbox_replicas(api, cluster_vhost.name, spec.codes)
                return all(r.missing == (victim.name,) and r.leader != victim.name for r in after)

            _wait_sync(settled, "every inbox led by a live node, the killed one missing")
        assert {r.name for r in after} == {inbox_queue(c) for c in spec.codes}
    finally:
        rabbitmq_cluster.heal()
        with cluster_vhost.management() as api:
            delete_agency_users(api, spec)


def test_the_management_api_never_hangs_on_a_frozen_node_and_answers_through_another(
    rabbitmq_cluster: AnyCluster, cluster_vhost: TestVhost
) -> None:
    """Until the cluster declares a frozen node down (net tick), RabbitMQ's own API calls on the
    other nodes wait for it too: each call then fails within its timeout on every node (one line,
    no hang). Once the node is declared down, the calls answer through another node."""
    from broker.management import ManagementError

    rabbitmq_cluster.pause(0)
    failures: list[str] = []
    try:
        with cluster_vhost.endpoint.management(timeout=3.0) as api:

            def answered() -> bool:
                try:
                    return cluster_vhost.name in api.list_vhosts()
                except ManagementError as exc:
                    failures.append(str(exc))
                    return False

            _wait_sync(answered, "the management API answering through another node")
            assert api.base_url != rabbitmq_cluster.nodes[0].management_url
    finally:
        rabbitmq_cluster.resume(0)
    assert all("\n" not in f and "management API unreachable" in f for f in failures)
    print(f"\ncalls failed (bounded) before the node was declared down: {len(failures)}")


def test_heal_restarts_the_nodes_a_partition_left_apart_once_its_patience_runs_out(
    rabbitmq_cluster: AnyCluster, cluster_vhost: TestVhost
) -> None:
    """A node frozen past the net tick partitions the cluster. Given no patience, heal does not
    wait for autoheal: it restarts the nodes that do not see the whole cluster, on their own data,
    and the cluster is whole again with what it held (the test's vhost)."""
    frozen = rabbitmq_cluster.nodes[0].name
    rabbitmq_cluster.pause(0)
    with rabbitmq_cluster.nodes[1].management(timeout=3.0) as api:

        def declared_down() -> bool:
            with contextlib.suppress(Exception):
                return not any(n["name"] == frozen and n.get("running") for n in api.list_nodes())
            return False

        _wait_sync(declared_down, "the frozen node declared down by another")
    with capture_logs() as logs:
        rabbitmq_cluster.heal(patience_s=0.0)
    restarted = [e for e in logs if e["event"] == "cluster_heal_restarting_nodes"]
    assert len(restarted) == 1 and "c1" in restarted[0]["nodes"], restarted
    names = {n.name for n in rabbitmq_cluster.nodes}
    for node in rabbitmq_cluster.nodes:
        with node.management() as api:
            assert {n["name"] for n in api.list_nodes() if n.get("running")} == names, node.short
            assert cluster_vhost.name in api.list_vhosts()

            def no_partitions(api: ManagementClient = api) -> bool:
                return not any(n.get("partitions") for n in api.list_nodes())

            _wait_sync(no_partitions, f"{node.short} reporting no partition")


async def test_a_client_whose_first_node_is_down_connects_to_the_next_and_a_bad_list_fails_in_one_line(
    rabbitmq_cluster: AnyCluster, cluster_vhost: TestVhost
) -> None:
    rabbitmq_cluster.kill(0)
    connection = await connect(cluster_vhost.amqp_url, name="first-node-down")
    async with connection:
        assert connection.node == f"127.0.0.1:{rabbitmq_cluster.nodes[1].amqp_port}"
        channel = await connection.channel()
        queue = await channel.declare_queue(
            "probe", durable=True, arguments={"x-queue-type": "quorum"}
        )
        await channel.default_exchange.publish(aio_pika.Message(b"x"), routing_key="probe")
        assert (await queue.get(timeout=10)).body == b"x"
    with pytest.raises(BrokerUnreachable) as caught:
        await connect(
            "amqp://guest:guest@127.0.0.1:1,127.0.0.1:2/", name="nowhere", connect_timeout_s=5
        )
    assert "127.0.0.1:1" in str(caught.value) and "127.0.0.1:2" in str(caught.value)
    assert "\n" not in str(caught.value)


async def test_a_publish_to_a_frozen_node_fails_in_time_and_the_connection_moves_on(
    rabbitmq_cluster: AnyCluster, cluster_vhost: TestVhost
) -> None:
    """No confirm, no hang: the publish fails (the outbox keeps the row), the connection leaves
    the frozen node for another, and the next publish is confirmed there."""
    with cluster_vhost.management() as api:
        api.declare_exchange(cluster_vhost.name, "jiexu", "topic")
        api.declare_queue(cluster_vhost.name, "probe", {"x-queue-type": "quorum"})
        api.bind_queue(cluster_vhost.name, "jiexu", "probe", "#")
    connection = await connect(cluster_vhost.amqp_url, name="frozen-publish")
    async with connection:
        assert connection.node == f"127.0.0.1:{rabbitmq_cluster.nodes[0].amqp_port}"
        publisher = await Publisher(connection, agency="110000", confirm_timeout_s=3.0).start()
        message = aio_pika.Message(b"x", message_id="m1", user_id=rabbitmq_cluster.username)
        await publisher.publish_message("jiexu", "k", message)
        rabbitmq_cluster.pause(0)
        try:
            from broker.publisher import PublishInterrupted

            with pytest.raises(PublishInterrupted, match="no confirm"):
                await publisher.publish_message("jiexu", "k", message)

            async def published_elsewhere() -> bool:
                with contextlib.suppress(Exception):
                    await publisher.publish_message("jiexu", "k", message)
                    return True
                return False

            await eventually(published_elsewhere, "a confirmed publish on another node", WAIT_S)
            assert connection.node != f"127.0.0.1:{rabbitmq_cluster.nodes[0].amqp_port}"
        finally:
            rabbitmq_cluster.resume(0)
        await publisher.close()


# -- flows with nodes taken away ----------------------------------------------------------------


@dataclass
class Flow:
    cluster: AnyCluster
    vhost: TestVhost
    provisioned: Provisioned
    transfers: list[Transfer]
    opened: dict[str, OpenedService]
    log_dir: Path
    order: list[int] | None = None
    """The nodes in the agents' URL, in order (default c1, c2, c3): they connect to the first."""
    runs: dict[str, AgentRun] = field(default_factory=dict)
    starts: dict[str, int] = field(default_factory=dict)
    drains: int = 0

    async def terminal(self) -> int:
        """Cases terminal at both ends."""
        count = 0
        for t in self.transfers:
            ends = [await self.opened[c].store.get_case(t.case_id) for c in (t.outgoing, t.receiving)]
            if all(r is not None and r.state in TERMINAL for r in ends):
                count += 1
        return count

    async def progress_beyond(self, done: int, what: str, by: int = 10) -> int:
        """Wait until at least ``by`` more cases than ``done`` are terminal; returns the count."""
        reached = done

        async def moved() -> bool:
            nonlocal reached
            reached = await self.terminal()
            return reached >= min(done + by, len(self.transfers))

        await eventually(moved, what, WAIT_S)
        return reached

    async def start(self, code: str) -> AgentRun:
        self.starts[code] = self.starts.get(code, 0) + 1
        url = self.cluster.endpoint(self.order).amqp_url(vhost=self.vhost.name)
        settings = self.provisioned.settings(code, deadline_interval_s=0.5, amqp_url=url)
        run = await start_agent(settings, self.log_dir, start=self.starts[code])
        self.runs[code] = run
        return run

    async def drain(self, code: str) -> None:
        """SIGTERM one agent; it must exit 0 within the bound, whatever the cluster is doing."""
        run = self.runs[code]
        status = await run.terminate(DRAIN_BOUND_S)
        assert status == 0, f"agent {code} did not drain within {DRAIN_BOUND_S} s:\n{run.output[-3000:]}"
        self.drains += 1

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("*.log")))


def _transfers(n: int, rng: random.Random) -> list[Transfer]:
    kinds = ("transferred", "transferred", "payout", "zero")
    transfers: list[Transfer] = []
    for seq in range(1, n + 1):
        outgoing, receiving = (ZHENGZHOU, JIUJIANG) if seq % 2 else (JIUJIANG, ZHENGZHOU)
        kind = kinds[seq % len(kinds)]
        out, into = make_mover(
            rng,
            outgoing,
            receiving,
            seq,
            insurance_type=InsuranceType.EMPLOYEE,
            retiree=False,
            arrears=False,
            zero_balance=kind == "zero",
        )
        transfers.append(Transfer(kind, outgoing, receiving, out, into, uuid.uuid4()))
    return transfers


async def _run_flow(
    cluster: AnyCluster,
    vhost: TestVhost,
    tmp_path: Path,
    disturb: Callable[[Flow], Awaitable[None]],
    *,
    before_agents: Callable[[Flow], None] | None = None,
    transfers: int = TRANSFERS,
) -> Flow:
    provisioned = provision(
        cluster.endpoint(),
        vhost.name,
        [AgencyProfile(JIUJIANG), AgencyProfile(ZHENGZHOU)],
        tmp_path / "world",
        user_prefix=f"t{uuid.uuid4().hex[:6]}-",
        retry_delays_ms=RETRY_DELAYS_MS,
    )
    seen = {short: len(lines) for short, lines in cluster.log_lines(*_HEALING).items()}
    flow = Flow(cluster, vhost, provisioned, _transfers(transfers, random.Random(19)), {}, tmp_path / "logs")
    money_before = await _seed(provisioned, flow.transfers)
    try:
        if before_agents is not None:
            before_agents(flow)
        for code in (JIUJIANG, ZHENGZHOU):
            await flow.start(code)
            flow.opened[code] = await open_service(provisioned.settings(code))
        for t in flow.transfers:
            await flow.opened[t.receiving].service.apply(_application(t))

        await disturb(flow)

        await eventually(lambda: _all_terminal(flow.opened, flow.transfers), "every case terminal", WAIT_S)
        await eventually(lambda: _outboxes_empty(flow.opened), "every outbox published", WAIT_S)
        for code in list(flow.runs):
            await flow.drain(code)
        await _check_books(flow.opened, flow.transfers, money_before)
        leftovers = await _leftovers(vhost, flow.opened)
        for code, here in leftovers.items():
            if not set(here) <= {inbox_queue(code)}:
                ids = [i for where, found in here.items() if where.startswith("dlq") for i in found]
                trail = [line[:400] for line in flow.logs().splitlines() if any(i and i in line for i in ids)]
                pytest.fail(f"{code} dead-lettered {here}; their log lines:\n" + "\n".join(trail[:40]))
    finally:
        for run in flow.runs.values():
            if run.process.returncode is None:
                await run.terminate(DRAIN_BOUND_S)
        for service in flow.opened.values():
            await service.close()
        cluster.heal()
        with vhost.management() as api:
            delete_agency_users(api, provisioned.spec)
    _report(flow)
    healing = {
        short: lines[seen.get(short, 0) :] for short, lines in cluster.log_lines(*_HEALING).items()
    }
    print(f"partition and autoheal lines in the node logs: { {k: len(v) for k, v in healing.items()} }")
    for short, lines in healing.items():
        for line in lines[:4]:
            print(f"  {short}: {line[:220]}")
    return flow


_HEALING = ("autoheal", "partitioned network", "inconsistent_database")


def _report(flow: Flow) -> None:
    logs = flow.logs()
    counts = {
        event: len(re.findall(f'"event": "{event}"', logs))
        for event in (
            "outbox_publish_failed",
            "outbox_publish_failed_recovered",
            "amqp_connection_lost",
            "amqp_connection_restored",
            "amqp_connection_abandoned",
        )
    }
    error_lines = [line for line in logs.splitlines() if re.search(r'"level": "(error|critical)"', line)]
    errors = len(error_lines)
    for line in error_lines[:5]:
        print(f"  error line: {line[:300]}")
    down = re.findall(r'"event": "amqp_connection_restored"[^\n]*?"down_for_s": ([0-9.]+)', logs)
    down += re.findall(r'"down_for_s": ([0-9.]+)[^\n]*"event": "amqp_connection_restored"', logs)
    lasted = re.findall(r'"lasted_s": ([0-9.]+)', logs)
    print(
        f"\n{len(flow.transfers)} transfers, {flow.drains} drains; "
        f"log events {counts}; error lines {errors}; "
        f"connections down for {down} s; relay outages lasted {lasted} s"
    )
    # One warning per outage per relay, not one per row per round.
    starts = sum(flow.starts.values())
    assert counts["outbox_publish_failed"] <= 4 * starts, counts


def _leader_of(cluster: AnyCluster, vhost: str, queue: str) -> int | None:
    leader = cluster.leaders(vhost).get(queue)
    return next((n.index for n in cluster.nodes if n.name == leader), None)


def _wait_sync(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for: {what}")
        time.sleep(0.2)


async def kill_the_inbox_leader_mid_flow(
    cluster: AnyCluster, vhost: TestVhost, tmp_path: Path, transfers: int = TRANSFERS
) -> Flow:
    """A flow whose agents are both connected to the node leading Jiujiang's inbox; that node is
    SIGKILLed a fifth of the way in, transfers keep completing, the inbox gets a live leader, the
    node is started again, and the flow ends with the books exact (`_run_flow`'s checks)."""
    victim: list[int] = []

    def connect_to_the_leader(flow: Flow) -> None:
        leader = _leader_of(cluster, vhost.name, inbox_queue(JIUJIANG))
        assert leader is not None
        victim.append(leader)
        flow.order = [leader, *(n.index for n in cluster.nodes if n.index != leader)]

    async def kill_the_leader(flow: Flow) -> None:
        done = await flow.progress_beyond(0, "the flow under way", by=len(flow.transfers) // 5)
        (node,) = victim
        assert _leader_of(cluster, vhost.name, inbox_queue(JIUJIANG)) == node
        cluster.kill(node)
        # The exchange keeps completing transfers while that node is away...
        done = await flow.progress_beyond(done, "transfers completed while the leader is dead")
        # ...because the inbox elected a leader on a live node.
        await eventually(
            lambda: _leader_of(cluster, vhost.name, inbox_queue(JIUJIANG)) not in (None, node),
            "a new leader for the inbox",
            WAIT_S,
        )
        await asyncio.to_thread(cluster.restart, node)
        print(f"\nkilled and restarted {cluster.node(node).short} at {done} terminal")

    flow = await _run_flow(
        cluster, vhost, tmp_path, kill_the_leader, before_agents=connect_to_the_leader,
        transfers=transfers,
    )
    assert '"event": "amqp_connection_restored"' in flow.logs()
    return flow


async def test_the_node_leading_an_agency_inbox_killed_mid_flow_and_restarted_loses_nothing(
    rabbitmq_cluster: AnyCluster, cluster_vhost: TestVhost, tmp_path: Path
) -> None:
    """The worst node to lose: it leads Jiujiang's inbox and both agents are connected to it."""
    await kill_the_inbox_leader_mid_flow(rabbitmq_cluster, cluster_vhost, tmp_path)


async def test_the_node_the_agents_use_frozen_past_the_heartbeat_then_resumed_loses_nothing(
    rabbitmq_cluster: AnyCluster, cluster_vhost: TestVhost, tmp_path: Path
) -> None:
    """The agents are on c1 (first in their URL); c1 is frozen with SIGSTOP for longer than the
    heartbeat's grace. They leave it for c2 or c3 and keep completing transfers; an agent told to
    stop meanwhile drains within the bound and, started again, works through the other nodes;
    c1 resumes, the partition heals (autoheal), and the flow ends with the books exact."""

    async def freeze_c1(flow: Flow) -> None:
        done = await flow.progress_beyond(0, "the flow under way", by=len(flow.transfers) // 5)
        rabbitmq_cluster.pause(0)
        try:
            frozen_at = asyncio.get_running_loop().time()
            done = await flow.progress_beyond(done, "transfers completed while c1 is frozen")
            await flow.drain(ZHENGZHOU)
            await flow.start(ZHENGZHOU)
            done = await flow.progress_beyond(done, "transfers completed by the restarted agent")
            left = PAUSE_S - (asyncio.get_running_loop().time() - frozen_at)
            if left > 0:
                await asyncio.sleep(left)
        finally:
            rabbitmq_cluster.resume(0)
        await asyncio.to_thread(rabbitmq_cluster.heal)
        print(f"\nc1 frozen and resumed at {done} terminal")

    flow = await _run_flow(rabbitmq_cluster, cluster_vhost, tmp_path, freeze_c1)
    assert '"event": "amqp_connection_restored"' in flow.logs()


async def test_the_whole_cluster_stopped_and_started_mid_flow_loses_nothing(
    rabbitmq_cluster: AnyCluster, cluster_vhost: TestVhost, tmp_path: Path
) -> None:
    async def stop_everything(flow: Flow) -> None:
        done = await flow.progress_beyond(0, "the flow under way", by=len(flow.transfers) // 5)
        await asyncio.to_thread(rabbitmq_cluster.stop_all)
        await asyncio.sleep(3)
        await asyncio.to_thread(rabbitmq_cluster.start_nodes, [0, 1, 2])
        print(f"\nwhole cluster stopped and started at {done} terminal")

    await _run_flow(rabbitmq_cluster, cluster_vhost, tmp_path, stop_everything)


async def test_agents_whose_first_configured_node_is_down_start_and_work_through_the_others(
    rabbitmq_cluster: AnyCluster, cluster_vhost: TestVhost, tmp_path: Path
) -> None:
    async def nothing(flow: Flow) -> None:
        assert not rabbitmq_cluster.nodes[0].running

    await _run_flow(
        rabbitmq_cluster,
        cluster_vhost,
        tmp_path,
        nothing,
        before_agents=lambda flow: rabbitmq_cluster.kill(0),
        transfers=min(TRANSFERS, 40),
    )


# -- the command line on a cluster --------------------------------------------------------------


def _jiexu(env_url: str, *args: str, cwd: Path, columns: int | None = None) -> tuple[int, str, str]:
    import subprocess
    import sys

    from tests.integration.agent_processes import REPO

    env = {k: v for k, v in os.environ.items() if not k.startswith("JIEXU_")}
    env.update({"JIEXU_AMQP_URL": env_url, "PYTHONPATH": str(REPO)})
    if columns is not None:
        env["COLUMNS"] = str(columns)  # rich's tables: one row per line
    done = subprocess.run(
        [sys.executable, "-c", "from agents.cli import main; main()", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def test_topology_apply_and_status_take_a_url_naming_every_node_and_a_bad_one_in_one_line(
    rabbitmq_cluster: AnyCluster, cluster_vhost: TestVhost, tmp_path: Path
) -> None:
    import json

    prefix = f"t{uuid.uuid4().hex[:6]}-"
    url = cluster_vhost.amqp_url
    assert url.count(",") == 2
    code, out, err = _jiexu(
        url, "topology", "apply", "--agency", "110000", "--agency", "440300",
        "--user-prefix", prefix, "--secrets-dir", str(tmp_path / "secrets"), "--json",
        cwd=tmp_path,
    )
    assert code == 0, err
    secret = json.loads((tmp_path / "secrets" / "110000.broker.json").read_text())
    assert secret["amqp_url"].count(",") == 2  # the agents will know every node
    try:
        code, out, err = _jiexu(url, "status", "--vhost", cluster_vhost.name, "--json", cwd=tmp_path)
        assert code == 0, err
        inbox = json.loads(out)["broker"]["agencies"]["110000"]["inbox"]
        assert len(inbox["members"]) == 3 and inbox["missing"] == [] and inbox["leader"]

        # The human output: each inbox's leader and members, and a line for a missing member.
        human = ("status", "--vhost", cluster_vhost.name)
        code, out, err = _jiexu(url, *human, cwd=tmp_path, columns=200)
        assert code == 0, err
        assert "inbox replicas" in out and "members missing" not in out, out
        row = next(line for line in out.splitlines() if "110000" in line and "of 3" in line)
        assert inbox["leader"] in row and "3 of 3" in row, out
        members = set(inbox["members"])
        assert members == {n.name for n in rabbitmq_cluster.nodes}
        assert all(m in out for m in members), out

        victim = rabbitmq_cluster.kill(2)
        shown = ""

        def missing_shown() -> bool:
            nonlocal shown
            code, shown, _ = _jiexu(url, *human, cwd=tmp_path, columns=200)
            return code == 0 and f"inbox of 110000: 1 of 3 members missing ({victim.name})" in shown

        _wait_sync(missing_shown, f"jiexu status naming {victim.name} missing")
        row = next(line for line in shown.splitlines() if "110000" in line and "of 3" in line)
        assert "2 of 3" in row and victim.name in row, shown

        code, out, err = _jiexu("amqp://u:p@h1:5681,,h2/", "status", "--json", cwd=tmp_path)
        assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    finally:
        spec = TopologySpec(agency_codes=("110000", "440300"), user_prefix=prefix)
        with cluster_vhost.management() as api:
            delete_agency_users(api, spec)
