"""The compose region (deploy/compose) with host networking: it starts (3-node RabbitMQ cluster,
PostgreSQL, Prometheus), is provisioned (topology, users, keys, directory, databases; two agencies
with two agent replicas each and the reconciler), and completes transfers of three branches
(balance transferred, zero balance, paid out to the person) while one agent container has been
killed and one RabbitMQ node stopped; both come back during the transfers. Then every case has
completed at both ends with the money conserved, /readyz of every agent answers 200, and
Prometheus shows every agent's target up; a directory file replaced on the host is reloaded by
the running agents. Dead letters: none may have any reason but one known
defect (see the end of the test). About two minutes; all through `deploy/compose/region`, as
docs/operations.md tells an operator.

Without Docker or docker-compose the test skips locally and fails in CI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
REGION = ROOT / "deploy" / "compose" / "region"
AGENT_PORTS = {"agent-110000-a": 9481, "agent-110000-b": 9482, "agent-320100-a": 9483, "agent-320100-b": 9484}
PROMETHEUS = "http://127.0.0.1:9489"
KILLED_AGENT = "agent-110000-a"
STOPPED_NODE = "rabbit-2"  # the node the two "-b" replicas talk to
PER_DIRECTION = 6  # 12 cases, the three branches in each direction


def _skip_or_fail(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the compose region: {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def region(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    if shutil.which("docker-compose") is None:
        _skip_or_fail("docker-compose is missing: apt-get install docker-compose")
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        _skip_or_fail("no Docker engine answers; start one: `dockerd &`")
    env = {
        **os.environ,
        "REGION_STATE": str(tmp_path_factory.mktemp("region")),
        "REGION_HOST_NETWORK": "1",
        "REGION_PROJECT": f"jiexu-region-test-{uuid.uuid4().hex[:6]}",
    }
    started = time.monotonic()
    subprocess.run([str(REGION), "build"], env=env, check=True, timeout=1200)
    print(f"images ready in {time.monotonic() - started:.0f} s")
    try:
        yield env
    finally:
        subprocess.run([str(REGION), "down"], env=env, timeout=180)


def _region(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(REGION), *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"region {' '.join(args)}: {done.returncode}\n{done.stderr[-3000:]}"
    return done


def _wait(what: str, check: object, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while True:
        try:
            if check():  # type: ignore[operator]
                return
        except (httpx.HTTPError, OSError, KeyError, ValueError):
            pass
        assert time.monotonic() < deadline, f"{what}: not within {within_s:.0f} s"
        time.sleep(1)


def _replace_directory(state: Path, renamed: tuple[str, str]) -> None:
    """A new directory (one agency renamed), signed with the region's operator key, renamed over
    the old file and signature in the mounted folder."""
    from broker.directory_trust import OPERATOR, sign_directory
    from broker.signing import load_private_key

    directory = state / "directory" / "directory.json"
    body = json.loads(directory.read_text(encoding="utf-8"))
    code, name = renamed
    for entry in body["agencies"]:
        if entry["code"] == code:
            entry["name"] = name
    new = directory.with_name("directory.json.new")
    new.write_text(json.dumps(body, ensure_ascii=False, indent=2), encoding="utf-8")
    signature = sign_directory(new, load_private_key(state / "secrets" / "all" / f"{OPERATOR}.ed25519.pem"))
    for path in (new, signature):
        path.chmod(0o644)
    os.replace(new, directory)
    os.replace(signature, directory.with_name("directory.json.sig"))


@pytest.mark.timeout(1800)
def test_a_region_transfers_through_an_agent_kill_and_a_node_stop(region: dict[str, str]) -> None:
    env = region
    timings: dict[str, float] = {}
    t = time.monotonic()
    _region(env, "up")
    timings["up"] = time.monotonic() - t
    t = time.monotonic()
    _region(env, "provision")
    timings["provision"] = time.monotonic() - t

    # The faults, then the transfers; both come back while the transfers wait for their outcome.
    t = time.monotonic()
    _region(env, "compose", "kill", KILLED_AGENT)
    _region(env, "compose", "stop", "-t", "5", STOPPED_NODE)
    transfers = subprocess.Popen(
        [str(REGION), "transfers", str(PER_DIRECTION), "7"], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    time.sleep(8)
    assert transfers.poll() is None, "the transfers ended while an agency had no consumer"
    _region(env, "compose", "start", STOPPED_NODE)
    _region(env, "compose", "start", KILLED_AGENT)
    out, err = transfers.communicate(timeout=600)
    timings["transfers"] = time.monotonic() - t
    outcome = json.loads(out.strip().splitlines()[-1])
    print(json.dumps(outcome, ensure_ascii=False), timings)
    assert outcome["cases"] == 2 * PER_DIRECTION
    assert outcome["states"] == {"completed": 4 * PER_DIRECTION}, err[-3000:]
    assert outcome["money_conserved"] is True
    assert outcome["moved_fen"] > 0

    # Every agent is ready again, and Prometheus scrapes them all.
    for name, port in AGENT_PORTS.items():
        _wait(f"{name} /readyz", lambda p=port: httpx.get(
            f"http://127.0.0.1:{p}/readyz", timeout=3).status_code == 200, 180)

    def agents_up() -> bool:
        targets = httpx.get(f"{PROMETHEUS}/api/v1/targets", timeout=3).json()["data"]["activeTargets"]
        agents = [x for x in targets if x["labels"]["job"] == "jiexu-agent"]
        return len(agents) == len(AGENT_PORTS) and all(x["health"] == "up" for x in agents)

    _wait("Prometheus: every jiexu-agent target up", agents_up, 60)
    up = httpx.get(f"{PROMETHEUS}/api/v1/query", params={"query": 'up{job="jiexu-agent"}'}, timeout=3)
    assert sorted(r["value"][1] for r in up.json()["data"]["result"]) == ["1"] * len(AGENT_PORTS)

    # The directory's folder is mounted whole: a new directory signed by the operator and renamed
    # over the old one on the host (as an editor or `jiexu keys sign-directory` leaves it) is seen
    # by the running agents, which verify and reload it (JIEXU_DIRECTORY_CHECK_S, 10 s) without a
    # restart. A file mounted on its own would keep showing the old one inside the container.
    _replace_directory(Path(env["REGION_STATE"]), renamed=("110000", "北京市医保局（新名称）"))

    def reloaded() -> bool:
        logs = _region(env, "compose", "logs", "--no-color", "agent-320100-a").stdout
        return "directory_reloaded" in logs

    _wait("agent-320100-a reloading the replaced directory", reloaded, 90)

    # Dead letters: none. The replicas of one agency share the PostgreSQL store and each relay
    # claims the rows it publishes, so no copy is published twice.
    assert outcome["dead_letters"] == {} or not any(outcome["dead_letters"].values()), outcome


@pytest.mark.parametrize("host_network", [False, True], ids=["compose-network", "host-network"])
def test_the_compose_files_are_valid(host_network: bool, tmp_path: Path) -> None:
    """Both forms of the region parse (docker-compose config), the production one included, which
    the region test above does not start (its containers would talk over a bridge network)."""
    if shutil.which("docker-compose") is None:
        _skip_or_fail("docker-compose is missing: apt-get install docker-compose")
    env = {**os.environ, "REGION_STATE": str(tmp_path), "REGION_HOST_NETWORK": "1" if host_network else ""}
    done = subprocess.run([str(REGION), "compose", "config", "-q"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.host.yml"])
def test_the_regions_prometheus_configuration_is_valid(config: str, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        _skip_or_fail("promtool is missing: apt-get install prometheus")
    # Laid out as in the container: the configuration with deploy/monitoring/rules beside it.
    shutil.copy(ROOT / "deploy" / "compose" / "prometheus" / config, tmp_path / "prometheus.yml")
    shutil.copytree(ROOT / "deploy" / "monitoring" / "rules", tmp_path / "rules")
    done = subprocess.run(
        [str(promtool), "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
