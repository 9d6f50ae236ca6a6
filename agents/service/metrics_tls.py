"""HTTPS for the metrics and health endpoints (`agents.service.health`).

``JIEXU_METRICS_TLS_CERT`` and ``JIEXU_METRICS_TLS_KEY`` (PEM files, both or neither) serve
``/metrics``, ``/healthz`` and ``/readyz`` over TLS 1.2 or later; ``JIEXU_METRICS_TLS_CLIENT_CA``
also asks every client for a certificate issued by that CA (mutual TLS: only a scraper holding one
reads the figures). Without them the endpoints are plain HTTP, and with ``JIEXU_REQUIRE_TLS`` on a
plain endpoint is allowed on a loopback address only (`check_plaintext`): anything else is a
configuration error, one line, before the server starts.

The files are followed while the server runs (`CertificateReloader`, every
``JIEXU_METRICS_TLS_CHECK_S`` seconds, 60 by default; 0: never): a certificate and key replaced on
disk (renewed by cert-manager, say) are verified in a scratch context first and then loaded into
the server's own, so new connections get them without a restart; a pair that does not load is
refused with one ``metrics_tls_reload_refused`` warning and the one in force stays. A replaced
client CA file is added to the CAs the server trusts (OpenSSL cannot forget one: a CA removed from
the file stays trusted until a restart).
"""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path
from typing import Self

import structlog
from pydantic import Field, model_validator
from pydantic_settings import BaseSettings

from agents.service.file_change import SettledChange
from broker.tls import PlaintextRefused, require_tls

__all__ = [
    "CertificateReloader",
    "MetricsTlsError",
    "MetricsTlsFields",
    "check_plaintext",
    "is_loopback",
    "server_context",
    "tls_files_problem",
]


log = structlog.get_logger("jiexu.agents.service.metrics_tls")


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


class CertificateReloader:
    """The server's live TLS context and the files it came from: `check` loads renewed files into
    that same context (new handshakes use them; connections already open keep theirs)."""

    def __init__(
        self, context: ssl.SSLContext, cert: Path, key: Path, client_ca: Path | None = None
    ) -> None:
        self.context = context
        self.cert, self.key, self.client_ca = cert, key, client_ca
        self._files = SettledChange((cert, key) if client_ca is None else (cert, key, client_ca))
        self.reloads = 0
        self.refusals = 0

    def check(self) -> bool:
        """Reload when the files changed and have stayed so since the last check (a certificate
        and its key copied one after the other are read together); True if new ones are in force.
        Never raises: a pair that does not load is refused with one warning."""
        if not self._files.settled():
            return False
        self._files.take()
        try:
            # A scratch context first: loading a bad pair into the live one could leave it with
            # the new certificate and the old key.
            server_context(self.cert, self.key, self.client_ca)
            self.context.load_cert_chain(certfile=self.cert, keyfile=self.key)
            if self.client_ca is not None:
                self.context.load_verify_locations(cafile=self.client_ca)
        except (MetricsTlsError, OSError, ssl.SSLError) as exc:
            self.refusals += 1
            log.warning("metrics_tls_reload_refused", cert=str(self.cert), error=str(exc))
            return False
        self.reloads += 1
        log.info("metrics_tls_reloaded", cert=str(self.cert), key=str(self.key))
        return True
