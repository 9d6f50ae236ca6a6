"""How an agency agent is configured: environment variables ``JIEXU_*`` or command-line options."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from agents.domain.continuity import DEFAULT_WAITING_MONTHS, MAX_WAITING_MONTHS
from agents.domain.deadlines import Regime
from agents.service.health import ALL_INTERFACES, MetricsSettings
from agents.service.metrics_tls import MetricsTlsFields
from agents.service.paths import DEFAULT_DATA_DIR, DEFAULT_DIRECTORY, DEFAULT_SECRETS_DIR, Paths

__all__ = ["AgentSettings"]


class AgentSettings(MetricsTlsFields):
    """One agency's agent. Files live under ``data_dir/<code>/`` and ``secrets_dir``."""

    model_config = SettingsConfigDict(env_prefix="JIEXU_", extra="ignore")

    agency: str = Field(pattern=r"^[0-9]{6}$", description="This agency's 6-digit region code")
    data_dir: Path = Field(DEFAULT_DATA_DIR, description="SQLite store and ledger, per agency")
    secrets_dir: Path = Field(DEFAULT_SECRETS_DIR, description="broker credentials and keys")
    directory: Path = Field(DEFAULT_DIRECTORY, description="the agency directory")
    amqp_url: str | None = Field(
        None, description="broker URL; the agent connects as its own agency user from secrets_dir"
    )
    database_url: str | None = Field(
        None, description="PostgreSQL DSN for the store (default: SQLite in data_dir)"
    )
    database_pool_size: int = Field(
        10,
        ge=1,
        description="PostgreSQL connections at most per pool (the store's, and the ledger's with "
        "JIEXU_LEDGER=postgres): replicas x 2 x this must fit the server's max_connections",
    )
    ledger: str = Field(
        "sqlite",
        description="the agency's books: sqlite, postgres, a jiexu.ledgers entry point or "
        "package.module:factory (see agents.ledger.choice)",
    )
    ledger_url: str | None = Field(
        None, description="PostgreSQL DSN for JIEXU_LEDGER=postgres (default: the store's)"
    )
    outbox_lease_s: float = Field(
        30.0, gt=0, description="how long a replica's relay holds the outbox rows it claimed"
    )
    recover_grace_s: float = Field(
        10.0,
        ge=0,
        description="with a PostgreSQL store (replicas), pending ledger commands of a case "
        "changed this recently are left to the replica driving them",
    )
    regime: Regime = Field(Regime.R2021, description="deadline rules: 2016 or 2021")
    calendar_dir: Path | None = Field(None, description="extra working-day calendar files")
    accepts_funds: bool = Field(True, description="whether this agency can receive balances")
    waiting_months: int = Field(
        DEFAULT_WAITING_MONTHS,
        ge=0,
        le=MAX_WAITING_MONTHS,
        strict=False,
        description="waiting period (等待期) after a broken continuity, 0 to 6 months (3 where the "
        "local rules say so)",
    )
    payout_approval_limit_fen: int = Field(
        0,
        ge=0,
        description="a payout to a person of more than this many fen waits in awaiting_approval "
        "until an operator runs `jiexu case approve-payout`; 0 (the default) holds every payout",
    )
    message_max_age_days: float = Field(
        30,
        gt=0,
        description="freshness window: a message whose sent_at is older is dead-lettered as stale; "
        "also the inbox's retention (rows older than the window are pruned)",
    )
    message_max_ahead_s: float = Field(
        600, ge=0, description="how far ahead of this agency's clock a message's sent_at may be"
    )
    prefetch: int = Field(100, ge=1)
    retry_delays_ms: tuple[int, ...] = (1000, 5000, 30000)
    user_prefix: str = ""
    reconciler: str | None = Field(
        "000000", description="code the reconciliation agent listens on; None to send it nothing"
    )
    deadline_interval_s: float = Field(60.0, gt=0, description="how often deadlines are checked")
    directory_check_s: float = Field(
        10.0,
        ge=0,
        description="how often the agency directory file is checked for a change (reloaded, "
        "verified as at start, without a restart); 0: only on SIGHUP",
    )
    verify_in_thread: bool = Field(
        True,
        description="verify signatures on a worker thread (helps with a spare core; costs a thread "
        "hand-off per message where the cores are all busy)",
    )

    metrics_port: int | None = Field(
        None, ge=0, le=65535,
        description="serve /metrics, /healthz, /readyz on this port (off when unset; 0: a free port)",
    )
    metrics_host: str = Field(
        ALL_INTERFACES, description="bind address of the metrics port; 127.0.0.1 for local scrapes"
    )

    @property
    def metrics(self) -> MetricsSettings:
        """``JIEXU_METRICS_PORT`` / ``JIEXU_METRICS_HOST`` as `agents.service.health` reads them."""
        return MetricsSettings(
            port=self.metrics_port,
            host=self.metrics_host,
            tls_cert=self.metrics_tls_cert,
            tls_key=self.metrics_tls_key,
            tls_client_ca=self.metrics_tls_client_ca,
        )

    @property
    def paths(self) -> Paths:
        """Every file of this deployment (a property, so ``model_dump`` and the environment made
        from it carry only the three directories)."""
        return Paths(data_dir=self.data_dir, secrets_dir=self.secrets_dir, directory=self.directory)

    @property
    def agency_dir(self) -> Path:
        return self.paths.agency_dir(self.agency)

    @property
    def store_path(self) -> Path:
        return self.paths.store(self.agency)

    @property
    def ledger_path(self) -> Path:
        return self.paths.ledger(self.agency)
