"""How the reconciler is configured: environment variables ``JIEXU_*`` or ``jiexu reconcile`` options.

Like `agents.service.settings.AgentSettings`. The broker login is ``JIEXU_RECONCILER_AMQP_URL``
when given, else the reconciler's secrets file (``{secrets_dir}/000000.broker.json``) on the
broker of ``JIEXU_AMQP_URL``; the signing key is ``{keys_dir or secrets_dir}/000000.ed25519.pem``;
the report is `agents.service.paths.Paths.report` (SQLite), or with ``JIEXU_DATABASE_URL`` (the
agents' store setting) the schema ``reconcile_000000`` of that PostgreSQL database, which several
``jiexu reconcile`` processes may share (`agents.reconcile.stores`).

The metrics and health endpoints (`agents.service.health`) listen on
``JIEXU_RECONCILER_METRICS_PORT`` when it is set, else on ``JIEXU_METRICS_PORT`` (off when neither
is): an agent and the reconciler sharing one host's environment need two ports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from agents.domain.deadlines import Regime
from agents.domain.policy import REMINDER_INTERVAL_WORKING_DAYS
from agents.service.health import ALL_INTERFACES, MetricsSettings
from agents.service.metrics_tls import MetricsTlsFields
from agents.service.paths import DEFAULT_DATA_DIR, DEFAULT_DIRECTORY, DEFAULT_SECRETS_DIR, Paths
from broker.names import RECONCILER_CODE
from broker.topology import DEFAULT_RETRY_DELAYS_MS

__all__ = ["ReconcilerSettings"]


class ReconcilerSettings(MetricsTlsFields):
    """The reconciliation agent (code ``000000``)."""

    model_config = SettingsConfigDict(env_prefix="JIEXU_", extra="ignore", frozen=True)

    code: str = Field(RECONCILER_CODE, pattern=r"^[0-9]{6}$", description="the reconciler's code")
    regime: Regime = Field(
        Regime.R2021,
        description="whose form-to-completion limit makes a case overdue (5 working days in 2021, "
        "15 in 2016)",
    )
    repeat_working_days: int = Field(
        REMINDER_INTERVAL_WORKING_DAYS,
        ge=1,
        description="working days between two probes (or re-requests) of the same overdue case",
    )
    data_dir: Path = Field(DEFAULT_DATA_DIR, description="the report lives in data_dir/000000/")
    secrets_dir: Path = Field(DEFAULT_SECRETS_DIR, description="000000.broker.json")
    keys_dir: Path | None = Field(None, description="000000.ed25519.pem (default: secrets_dir)")
    directory: Path = Field(DEFAULT_DIRECTORY, description="the agency directory")
    reconciler_amqp_url: str | None = Field(
        None, description="AMQP URL with the reconciler's own login (JIEXU_RECONCILER_AMQP_URL)"
    )
    amqp_url: str | None = Field(None, description="where the broker is, when the login is from secrets")
    vhost: str | None = Field(None, description="vhost (default: the secrets file's)")
    calendar_dir: Path | None = Field(None, description="extra working-day calendar files")
    database_url: str | None = Field(
        None,
        description="PostgreSQL DSN for the report, schema reconcile_<code>, which several "
        "reconcilers may share (default: SQLite in data_dir, one reconciler)",
    )
    database_pool_size: int = Field(
        10, ge=1, description="PostgreSQL connections at most per reconciler process"
    )
    outbox_lease_s: float = Field(
        30.0, gt=0, description="how long a reconciler's relay holds the outbox rows it claimed"
    )
    user_prefix: str = ""
    retry_delays_ms: Annotated[tuple[int, ...], NoDecode] = DEFAULT_RETRY_DELAYS_MS
    sweep_interval_s: float = Field(300.0, ge=0.1, description="seconds between sweeps")
    directory_check_s: float = Field(
        10.0,
        ge=0,
        description="how often the agency directory file is checked for a change (reloaded "
        "without a restart); 0: only on SIGHUP",
    )
    message_max_age_days: float = Field(
        30, gt=0, description="freshness window (as an agency's): older is dead-lettered as stale; "
        "also the inbox's retention"
    )
    message_max_ahead_s: float = Field(
        600, ge=0, description="how far ahead of the reconciler's clock sent_at may be"
    )
    metrics_port: int | None = Field(
        None, ge=0, le=65535,
        description="JIEXU_METRICS_PORT: serve /metrics, /healthz, /readyz on this port (off when "
        "unset; 0: a free port)",
    )
    reconciler_metrics_port: int | None = Field(
        None, ge=0, le=65535,
        description="JIEXU_RECONCILER_METRICS_PORT: the reconciler's port, which wins over "
        "JIEXU_METRICS_PORT (an agent and the reconciler on one host need two ports)",
    )
    metrics_host: str = Field(
        ALL_INTERFACES, description="bind address of the metrics port; 127.0.0.1 for local scrapes"
    )
    figures_interval_s: float = Field(
        15.0, gt=0, description="seconds between two reads of the report for the national view"
    )

    @field_validator("regime", mode="before")
    @classmethod
    def _regime(cls, value: Any) -> Any:
        return Regime.parse(value) if isinstance(value, str | int) else value

    @field_validator("retry_delays_ms", mode="before")
    @classmethod
    def _delays(cls, value: Any) -> Any:
        """``100,300`` (the command line's form) or a JSON array (the agents' form)."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return tuple(json.loads(text))
            return tuple(int(part) for part in text.split(",") if part.strip())
        return value

    @property
    def metrics(self) -> MetricsSettings:
        """Where the endpoints listen: ``JIEXU_RECONCILER_METRICS_PORT`` if set, else
        ``JIEXU_METRICS_PORT``; ``JIEXU_METRICS_HOST``."""
        port = self.reconciler_metrics_port
        return MetricsSettings(
            port=port if port is not None else self.metrics_port,
            host=self.metrics_host,
            tls_cert=self.metrics_tls_cert,
            tls_key=self.metrics_tls_key,
            tls_client_ca=self.metrics_tls_client_ca,
        )

    @property
    def paths(self) -> Paths:
        return Paths(data_dir=self.data_dir, secrets_dir=self.secrets_dir, directory=self.directory)

    @property
    def report_path(self) -> Path:
        """The reconciler's report store."""
        return self.paths.report(self.code)

    @property
    def key_dir(self) -> Path:
        return self.keys_dir or self.secrets_dir
