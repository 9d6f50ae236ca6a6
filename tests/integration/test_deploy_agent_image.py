"""The agent image (deploy/images/agent) builds without a registry and runs jiexu as configured
only by JIEXU_* variables and mounted files: `--help`, the non-root user, and an agent of a
provisioned agency against the host's broker (host networking) that becomes ready, is consumed
from, answers /readyz and passes the image's own health check.

build.sh keeps an image built from the same inputs (a hash of the sources), so this costs seconds
after CI's `.ci/run` has built it; from nothing about five minutes. Without a Docker engine the
tests skip locally and fail in CI.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agents.tools.provision import AgencyProfile, Provisioned, provision
from broker.pytest_plugin import TestVhost

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "deploy" / "images" / "agent" / "build.sh"
IMAGE = os.environ.get("JIEXU_AGENT_IMAGE", "jiexu/agent:offline")
UID = 10001
A, B = "110000", "320100"


def _docker_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="module")
def image() -> str:
    if not _docker_answers():
        if os.environ.get("CI"):
            pytest.fail("CI must test the agent image: no Docker engine answers")
        pytest.skip("no Docker engine answers; start one: `dockerd &`")
    started = time.monotonic()
    subprocess.run([str(BUILD), IMAGE], check=True, timeout=1200)
    print(f"agent image ready in {time.monotonic() - started:.0f} s")
    return IMAGE


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(1300)
def test_the_image_runs_jiexu_as_a_non_root_user(image: str) -> None:
    shown = subprocess.run(["docker", "run", "--rm", image, "--help"], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert "agent" in shown.stdout and "reconcile" in shown.stdout
    who = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "id", image, "-u"], capture_output=True, text=True
    )
    assert who.stdout.strip() == str(UID)
    health = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{json .Config.Healthcheck.Test}}", image],
        capture_output=True, text=True, check=True,
    )
    assert "jiexu-healthcheck" in health.stdout
    size = int(subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Size}}", image], capture_output=True, text=True, check=True
    ).stdout)
    print(f"{image}: {size / 1e6:.0f} MB")


@pytest.fixture
def provisioned(rabbitmq_vhost: TestVhost, tmp_path: Path) -> Iterator[Provisioned]:
    world = provision(
        rabbitmq_vhost.endpoint, rabbitmq_vhost.name, [AgencyProfile(A), AgencyProfile(B)],
        tmp_path / "world", user_prefix=f"img-{uuid.uuid4().hex[:6]}-",
    )
    # What an operator mounts: the agency's own two secret files, readable by the image's user.
    mounted = tmp_path / "mounted"
    mounted.mkdir(mode=0o700)
    for name in (f"{A}.broker.json", f"{A}.ed25519.pem", "operator.ed25519.pub"):
        shutil.copy(world.secrets_dir / name, mounted / name)
        os.chmod(mounted / name, 0o400)
    shutil.copy(world.directory_path, tmp_path / "directory.json")
    # The directory's signature (the operator's; its public key is among the mounted secrets).
    shutil.copy(f"{world.directory_path}.sig", tmp_path / "directory.json.sig")
    for shared in ("directory.json", "directory.json.sig"):
        os.chmod(tmp_path / shared, 0o644)
    for path in (mounted, *mounted.iterdir()):
        os.chown(path, UID, UID)
    try:
        yield world
    finally:
        world.teardown()


@pytest.mark.timeout(1300)
def test_an_agent_in_the_image_serves_its_agency(
    image: str, provisioned: Provisioned, rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    port = _free_port()
    name = f"jiexu-agent-test-{uuid.uuid4().hex[:8]}"
    endpoint = rabbitmq_vhost.endpoint
    run = [
        "docker", "run", "-d", "--rm", "--name", name, "--network", "host",
        "-e", f"JIEXU_AGENCY={A}",
        "-e", f"JIEXU_AMQP_URL=amqp://{endpoint.host}:{endpoint.amqp_port}/",
        "-e", f"JIEXU_USER_PREFIX={provisioned.user_prefix}",
        "-e", f"JIEXU_METRICS_PORT={port}",
        "-e", "JIEXU_METRICS_HOST=127.0.0.1",
        "-v", f"{tmp_path / 'mounted'}:/run/secrets/jiexu:ro",
        "-v", f"{tmp_path / 'directory.json'}:/etc/jiexu/directory.json:ro",
        "-v", f"{tmp_path / 'directory.json.sig'}:/etc/jiexu/directory.json.sig:ro",
        image, "agent",
    ]
    subprocess.run(run, check=True, capture_output=True)
    try:
        deadline = time.monotonic() + 60
        ready = None
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            state = subprocess.run(
                ["docker", "inspect", "-f", "{{.State.Running}}", name], capture_output=True, text=True
            )
            assert state.stdout.strip() == "true", _logs(name)
            time.sleep(0.5)
        assert ready is not None and ready.status_code == 200, _logs(name)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        assert f'agency="{A}"' in metrics
        # The image's HEALTHCHECK command, run now rather than after its first interval.
        check = subprocess.run(
            ["docker", "exec", name, "/usr/local/bin/jiexu-healthcheck"], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout
        consumers = 0
        deadline = time.monotonic() + 20  # the management API's figures lag a few seconds
        while consumers < 1 and time.monotonic() < deadline:
            with endpoint.management() as api:
                consumers = api.get_queue(rabbitmq_vhost.name, f"jiexu.inbox.{A}").get("consumers", 0)
            time.sleep(0.5)
        assert consumers >= 1
        # SIGTERM drains and exits cleanly.
        stopped = subprocess.run(["docker", "stop", "-t", "30", name], capture_output=True, text=True)
        assert stopped.returncode == 0
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def _logs(name: str) -> str:
    return subprocess.run(["docker", "logs", "--tail", "40", name], capture_output=True, text=True).stderr
