"""HTTPS for the metrics and health endpoints (`agents.service.health`).

``JIEXU_METRICS_TLS_CERT`` and ``JIEXU_METRICS_TLS_KEY`` (PEM files, both or neither) serve
``/metrics``, ``/healthz`` and ``/readyz`` over TLS 1.2 or later; ``JIEXU_METRICS_TLS_CLIENT_CA``
also asks every client for a certificate issued by that CA (mutual TLS: only a scraper holding one
reads the figures). Without them the endpoints are plain HTTP, and with ``JIEXU_REQUIRE_TLS`` on a
plain endpoint is allowed on a loopback address only (`check_plaintext`): anything else is a
configuration error, one line, before the server starts.
"""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path
from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings

from broker.tls import PlaintextRefused, require_tls

__all__ = [
    "MetricsTlsError",
    "MetricsTlsFields",
    "check_plaintext",
    "is_loopback",
    "server_context",
    "tls_files_problem",
]


class MetricsTlsError(ValueError):
    """The metrics endpoint's TLS files are incomplete or do not load; one line."""


class MetricsTlsFields(BaseSettings):
    """The TLS files of the metrics endpoint, as the agent's and the reconciler's settings both
    read them (``JIEXU_METRICS_TLS_*``); a subclass sets ``model_config`` (the env prefix)."""

    metrics_tls_cert: Path | None = Field(
        None, description="JIEXU_METRICS_TLS_CERT: PEM certificate; the metrics port serves HTTPS"
    )
    metrics_tls_key: Path | None = Field(None, description="JIEXU_METRICS_TLS_KEY: its PEM key")
    metrics_tls_client_ca: Path | None = Field(
        None,
        description="JIEXU_METRICS_TLS_CLIENT_CA: require scrapers' client certificates from this CA",
    )

    @model_validator(mode="after")
    def _metrics_tls(self) -> Self:
        problem = tls_files_problem(
            self.metrics_tls_cert, self.metrics_tls_key, self.metrics_tls_client_ca
        )
        if problem is not None:
            raise ValueError(problem)
        return self


def tls_files_problem(cert: Path | None, key: Path | None, client_ca: Path | None) -> str | None:
    """What is wrong with this combination of settings, or None."""
    if (cert is None) != (key is None):
        return "JIEXU_METRICS_TLS_CERT and JIEXU_METRICS_TLS_KEY go together: set both or neither"
    if client_ca is not None and cert is None:
        return (
            "JIEXU_METRICS_TLS_CLIENT_CA asks scrapers for certificates over TLS: set "
            "JIEXU_METRICS_TLS_CERT and JIEXU_METRICS_TLS_KEY too"
        )
    return None


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the endpoint on this machine (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def check_plaintext(host: str, port: int | None, tls: bool, *, required: bool | None = None) -> None:
    """`PlaintextRefused` when ``JIEXU_REQUIRE_TLS`` is on and a plain HTTP endpoint would be
    reachable from other machines."""
    if port is None or tls or is_loopback(host):
        return
    if not (require_tls() if required is None else required):
        return
    raise PlaintextRefused(
        f"the metrics endpoint on {host}:{port} would be plain HTTP and JIEXU_REQUIRE_TLS is on: set "
        "JIEXU_METRICS_TLS_CERT and JIEXU_METRICS_TLS_KEY (and JIEXU_METRICS_TLS_CLIENT_CA for "
        "client certificates), or bind it to 127.0.0.1 with JIEXU_METRICS_HOST"
    )


def server_context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """The server's TLS context (TLS 1.2+); with ``client_ca``, a client certificate it issued is
    required. `MetricsTlsError` naming the file when one does not load."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile=cert, keyfile=key)
    except (OSError, ssl.SSLError) as exc:
        raise MetricsTlsError(
            f"JIEXU_METRICS_TLS_CERT {cert} / JIEXU_METRICS_TLS_KEY {key} do not load as a PEM "
            f"certificate and its key: {exc.strerror or exc}"
        ) from exc
    if client_ca is not None:
        try:
            context.load_verify_locations(cafile=client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise MetricsTlsError(
                f"JIEXU_METRICS_TLS_CLIENT_CA {client_ca} does not load as PEM CA certificates: "
                f"{exc.strerror or exc}"
            ) from exc
        context.verify_mode = ssl.CERT_REQUIRED
    return context
