"""A throwaway RabbitMQ container (testcontainers): what the provider chain's ``container`` step
starts (`broker.provider`), and what the broker image tests start with options of their own.

A container gets an administrator of its own (``jiexu-admin``, a random password, passed as
``RABBITMQ_DEFAULT_USER``/``RABBITMQ_DEFAULT_PASS``) and publishes its ports on 127.0.0.1 only.
testcontainers (and docker) are in the test extra only, imported when a container is started.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ADMIN_USER", "BrokerContainer", "start_broker_container"]

# The administrator a container provider gives its broker (with a random password): never guest,
# which RabbitMQ admits from the container's own loopback only.
ADMIN_USER = "jiexu-admin"


def _container_env_defaults() -> None:
    # No registry may be reachable (ryuk cannot be pulled), and clients must come in through
    # a port published on 127.0.0.1 rather than a private bridge address.
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    docker_host = os.environ.get("DOCKER_HOST", "")
    if not docker_host or docker_host.startswith("unix://"):
        os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
        os.environ.setdefault("TC_HOST", "127.0.0.1")


@dataclass
class BrokerContainer:
    """A RabbitMQ container started by `start_broker_container`, with its published ports.

    Ports are published on 127.0.0.1 only, on ports Docker picks. ``stop()`` removes it.
    """

    container: Any
    image: str
    username: str
    password: str

    @property
    def host(self) -> str:
        host: str = self.container.get_container_host_ip()
        return host

    def port(self, container_port: int) -> int:
        """The host port published for ``container_port`` (5672, 15672, 5671, 15671)."""
        return int(self.container.get_exposed_port(container_port))

    @property
    def docker(self) -> Any:
        """The docker SDK's container object."""
        return self.container.get_wrapped_container()

    def exec(self, *command: str, user: str = "root") -> tuple[int, str]:
        """Run ``command`` inside the container as ``user``: exit code and output."""
        code, output = self.docker.exec_run(list(command), user=user)
        return int(code), output.decode(errors="replace")

    def logs(self, tail: int | str = "all") -> str:
        logs: bytes = self.docker.logs(tail=tail)
        return logs.decode(errors="replace")

    def dead(self) -> str | None:
        """None while it runs, else its status and the end of its log."""
        self.docker.reload()
        status = self.docker.status
        if status in ("exited", "dead"):
            return f"container {status}: {self.logs(tail=20)}"
        return None

    def stop(self) -> None:
        self.container.stop()


def start_broker_container(
    image: str,
    *,
    username: str | None = ADMIN_USER,
    password: str | None = None,
    environment: Mapping[str, str] | None = None,
    tls_dir: Path | None = None,
    mounts: Mapping[Path, str] | None = None,
) -> BrokerContainer:
    """Start ``image`` with an administrator of its own and its ports published on 127.0.0.1.

    The administrator goes in as ``RABBITMQ_DEFAULT_USER``/``RABBITMQ_DEFAULT_PASS`` (what both the
    offline image and the official ``rabbitmq`` image read at the first start); the password is
    random unless given. ``username=None`` passes neither (give ``*_FILE`` in ``environment``).
    ``tls_dir`` (``ca_certificate.pem``, ``server_certificate.pem``, ``server_key.pem``) is mounted
    read-only at ``/etc/rabbitmq/tls``, where the offline image turns on AMQPS 5671 and HTTPS
    15671. Does not wait for the broker: the caller decides what "ready" means.
    """
    _container_env_defaults()
    from testcontainers.core.container import DockerContainer

    password = password if password is not None else secrets.token_urlsafe(24)
    container: Any = DockerContainer(image)
    container.with_name(f"jiexu-rabbitmq-{uuid.uuid4().hex[:8]}")
    ports = [5672, 15672] + ([5671, 15671] if tls_dir is not None else [])
    for port in ports:
        # docker-py: (address, None) publishes on that address, on a port Docker picks.
        container.ports[port] = ("127.0.0.1", None)
    if username is not None:
        container.with_env("RABBITMQ_DEFAULT_USER", username)
        container.with_env("RABBITMQ_DEFAULT_PASS", password)
    for key, value in (environment or {}).items():
        container.with_env(key, value)
    if tls_dir is not None:
        container.with_volume_mapping(str(tls_dir), "/etc/rabbitmq/tls", "ro")
    for host_path, container_path in (mounts or {}).items():
        container.with_volume_mapping(str(host_path), container_path, "ro")
    try:
        container.start()
    except Exception:
        with contextlib.suppress(Exception):
            container.stop()
        raise
    return BrokerContainer(container, image, username or "", password)
