"""The metrics and health endpoints of a long-running process, on ``JIEXU_METRICS_PORT``.

One small HTTP/1.1 server on the process's event loop (``asyncio.start_server``; no extra
dependency, and the readiness checks can await the store and the ledger on the loop that owns
them):

``GET /metrics``
    the process's registry in the Prometheus text format (OpenMetrics when the scraper asks).
``GET /healthz``
    200 ``{"status": "ok"}`` while the event loop answers: the liveness probe. A loop blocked long
    enough to miss the probe's timeout is worth a restart.
``GET /readyz``
    runs every registered `Readiness` check (broker connected, consumer active, store reachable,
    ledger reachable) concurrently, each within ``check_timeout_s``: 200 with the detail as JSON
    when all pass, 503 with the same detail otherwise.

Settings (environment): ``JIEXU_METRICS_PORT`` (no server when unset; ``0`` picks a free port)
and ``JIEXU_METRICS_HOST`` (default ``0.0.0.0``: in a container or a pod the scraper and the
kubelet's probes come from outside the network namespace, and a server that is off by default is
switched on to be reached; set ``127.0.0.1`` on a shared host where only a local Prometheus
scrapes). ``JIEXU_METRICS_TLS_CERT``/``_KEY`` (and ``_CLIENT_CA``) serve them over HTTPS
(`agents.service.metrics_tls`); with ``JIEXU_REQUIRE_TLS`` a plain endpoint must be on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agents.service.metrics_tls import (
    CertificateReloader,
    check_plaintext,
    server_context,
    tls_files_problem,
)
from broker.connection import BrokerConnection

__all__ = [
    "ALL_INTERFACES",
    "CheckResult",
    "HealthServer",
    "MetricsSettings",
    "Readiness",
    "broker_check",
    "start_health_server",
]

log = structlog.get_logger("jiexu.agents.service.health")

Check = Callable[[], bool | Awaitable[bool] | Awaitable[object]]
"""A readiness check: returns True (or, for an awaitable probe, anything) when ready; False or an
exception (the probe failed, or timed out) when not."""

MAX_REQUEST_BYTES = 8192
REQUEST_TIMEOUT_S = 5.0
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - the documented default of JIEXU_METRICS_HOST (see above)
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 400: "Bad Request",
            503: "Service Unavailable"}


class MetricsSettings(BaseSettings):
    """Where the metrics and health endpoints listen (``JIEXU_METRICS_PORT``/``_HOST``)."""

    model_config = SettingsConfigDict(env_prefix="JIEXU_METRICS_", extra="ignore")

    port: int | None = Field(None, ge=0, le=65535, description="off when unset; 0: a free port")
    host: str = Field(ALL_INTERFACES, description="bind address; 127.0.0.1 for local scrapes only")
    tls_cert: Path | None = Field(None, description="PEM certificate: serve over HTTPS")
    tls_key: Path | None = Field(None, description="its PEM private key")
    tls_client_ca: Path | None = Field(
        None, description="PEM CA: require a client certificate it issued (mutual TLS)"
    )
    tls_check_s: float = Field(
        60.0,
        ge=0,
        description="how often the TLS files are checked for a renewal, loaded without a restart "
        "(0: never)",
    )

    @model_validator(mode="after")
    def _tls_files(self) -> Self:
        problem = tls_files_problem(self.tls_cert, self.tls_key, self.tls_client_ca)
        if problem is not None:
            raise ValueError(problem)
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server's TLS context, None for plain HTTP (`agents.service.metrics_tls`)."""
        if self.tls_cert is None or self.tls_key is None:
            return None
        return server_context(self.tls_cert, self.tls_key, self.tls_client_ca)


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok} if self.error is None else {"ok": self.ok, "error": self.error}


class Readiness:
    """Named readiness checks the process registers as it starts its parts.

    >>> readiness = Readiness()
    >>> readiness.add("broker", lambda: True)
    """

    def __init__(self, check_timeout_s: float = 2.0) -> None:
        self._checks: dict[str, Check] = {}
        self.check_timeout_s = check_timeout_s

    def add(self, name: str, check: Check) -> None:
        """Register (or replace) a check. A process that is starting has none yet for its
        later parts: register a check for a part when that part is started."""
        self._checks[name] = check

    def remove(self, name: str) -> None:
        self._checks.pop(name, None)

    @property
    def names(self) -> list[str]:
        return list(self._checks)

    async def _run(self, name: str, check: Check) -> CheckResult:
        try:
            result = check()
            if inspect.isawaitable(result):
                value = await asyncio.wait_for(_awaited(result), self.check_timeout_s)
                ok = value is not False
            else:
                ok = bool(result)
        except TimeoutError:
            return CheckResult(name, False, f"no answer within {self.check_timeout_s} s")
        except Exception as exc:
            return CheckResult(name, False, f"{type(exc).__name__}: {str(exc)[:200]}")
        return CheckResult(name, ok, None if ok else "not ready")

    async def run(self) -> list[CheckResult]:
        """Every check's result; none registered yet (the process is starting) is not ready."""
        checks = list(self._checks.items())
        if not checks:
            return [CheckResult("started", False, "no readiness check registered yet")]
        return list(await asyncio.gather(*(self._run(name, check) for name, check in checks)))


def broker_check(connection: BrokerConnection) -> Callable[[], bool]:
    """Ready while the AMQP connection is open: not during a reconnection, not once closed."""

    def check() -> bool:
        return not connection.is_closed and connection.raw.connected.is_set()

    return check


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


class HealthServer:
    """Serves ``/metrics``, ``/healthz`` and ``/readyz``; `start` binds, `stop` closes."""

    def __init__(
        self,
        registry: CollectorRegistry,
        readiness: Readiness | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        tls_reloader: CertificateReloader | None = None,
        tls_check_s: float = 0.0,
    ) -> None:
        """``ssl_context``: serve HTTPS (`MetricsSettings.ssl_context`); None: plain HTTP.
        ``tls_reloader``: checked every ``tls_check_s`` seconds while the server runs."""
        self.registry = registry
        self.readiness = readiness if readiness is not None else Readiness()
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.tls_reloader = tls_reloader
        self._tls_check_s = tls_check_s
        self._server: asyncio.Server | None = None
        self._tls_task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in (ALL_INTERFACES, "") else self.host
        return f"{'https' if self.ssl_context is not None else 'http'}://{host}:{self.port}"

    async def start(self) -> HealthServer:
        self._server = await asyncio.start_server(
            self._serve,
            self.host,
            self.port,
            limit=MAX_REQUEST_BYTES,
            ssl=self.ssl_context,
            ssl_handshake_timeout=REQUEST_TIMEOUT_S if self.ssl_context is not None else None,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info(
            "metrics_listening", host=self.host, port=self.port, tls=self.ssl_context is not None
        )
        if self.tls_reloader is not None and self._tls_check_s > 0:
            self._tls_task = asyncio.create_task(
                self._follow_tls(self.tls_reloader, self._tls_check_s), name="metrics-tls"
            )
        return self

    @staticmethod
    async def _follow_tls(reloader: CertificateReloader, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            reloader.check()

    async def stop(self) -> None:
        task, self._tls_task = self._tls_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> HealthServer:
        return await self.start()

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_S)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                return
            status, content_type, body, head_only = await self._respond(head)
            headers = (
                f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
            )
            writer.write(headers.encode("latin-1") + (b"" if head_only else body))
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        except Exception as exc:  # a bug here must not take the process down
            log.warning("metrics_request_failed", error=repr(exc))
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _respond(self, head: bytes) -> tuple[int, str, bytes, bool]:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            return 400, "text/plain; charset=utf-8", b"bad request\n", False
        method, target, _version = parts
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        head_only = method == "HEAD"
        if method not in ("GET", "HEAD"):
            return 405, "text/plain; charset=utf-8", b"method not allowed\n", False
        path = target.split("?", 1)[0]
        if path == "/metrics":
            encoder, content_type = choose_encoder(headers.get("accept", ""))
            return 200, content_type, encoder(self.registry), head_only
        if path == "/healthz":
            return 200, "application/json", _json({"status": "ok"}), head_only
        if path == "/readyz":
            results = await self.readiness.run()
            ready = all(r.ok for r in results)
            body = _json({"ready": ready, "checks": {r.name: r.to_json() for r in results}})
            return (200 if ready else 503), "application/json", body, head_only
        return 404, "text/plain; charset=utf-8", b"not found: /metrics, /healthz, /readyz\n", False


def _json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True).encode() + b"\n"


async def start_health_server(
    registry: CollectorRegistry,
    readiness: Readiness,
    settings: MetricsSettings | None = None,
) -> HealthServer | None:
    """Start the server when ``JIEXU_METRICS_PORT`` is set; None when it is not.

    Raises `broker.tls.PlaintextRefused` (plain HTTP off loopback with ``JIEXU_REQUIRE_TLS``) or
    `agents.service.metrics_tls.MetricsTlsError` (a TLS file that does not load) first."""
    settings = settings if settings is not None else MetricsSettings()
    if settings.port is None:
        return None
    check_plaintext(settings.host, settings.port, settings.tls)
    context = settings.ssl_context()
    reloader = None
    if context is not None and settings.tls_cert is not None and settings.tls_key is not None:
        reloader = CertificateReloader(
            context, settings.tls_cert, settings.tls_key, settings.tls_client_ca
        )
    return await HealthServer(
        registry, readiness, host=settings.host, port=settings.port,
        ssl_context=context, tls_reloader=reloader, tls_check_s=settings.tls_check_s,
    ).start()
