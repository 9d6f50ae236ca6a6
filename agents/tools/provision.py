"""Provision a set of agencies on one broker: keys, directory, topology, users, secrets, settings.

Used by ``jiexu demo`` and by the tests that run real agents. A deployment does the same in
steps with ``jiexu keys generate``, an agency directory file, and ``jiexu topology apply``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.domain.deadlines import Regime
from agents.service.paths import Paths
from agents.service.settings import AgentSettings
from broker.directory import AgencyDirectory, AgencyEntry, DirectoryBankAccount
from broker.directory_trust import OPERATOR, install_operator_key, sign_directory
from broker.names import RECONCILER_CODE
from broker.provider import BrokerEndpoint
from broker.signing import (
    generate_private_key,
    public_key_to_raw_b64,
    save_private_key,
)
from broker.topology import (
    AgencyCredentials,
    TopologySpec,
    apply_topology,
    delete_agency_users,
    write_credentials,
)
from schemas.common import MAX_FEN
from schemas.registry import MODELS

__all__ = ["REGION_NAMES", "AgencyProfile", "Provisioned", "provision", "world_paths"]

REGION_NAMES: Mapping[str, str] = {
    "110000": "北京市",
    "440300": "深圳市",
    "441900": "东莞市",
    "360400": "九江市",
    "540100": "拉萨市",
    "410100": "郑州市",
    "320100": "南京市",
    "440100": "广州市",
    "310000": "上海市",
    "510100": "成都市",
}


@dataclass(frozen=True)
class AgencyProfile:
    """One agency to provision. ``versions``: per message type the versions it speaks (None: all
    that jiexu knows); an agency still on version 1 of everything has ``{t: (1,) ...}``."""

    code: str
    regime: Regime = Regime.R2021
    versions: Mapping[str, tuple[int, ...]] | None = None
    accepts_funds: bool = True

    @property
    def name(self) -> str:
        return f"{REGION_NAMES.get(self.code, self.code)}医疗保障事务中心"

    def supported_versions(self) -> dict[str, tuple[int, ...]]:
        known = {t: tuple(m.VERSION for m in models) for t, models in MODELS.items()}
        if self.versions is None:
            return known
        return {t: tuple(self.versions.get(t, (1,))) for t in known}

    @staticmethod
    def v1_only(code: str, regime: Regime = Regime.R2021) -> AgencyProfile:
        """An agency that has not upgraded: version 1 of every message type."""
        return AgencyProfile(code, regime, {t: (1,) for t in MODELS})


def _bank_account(code: str, name: str) -> DirectoryBankAccount:
    return DirectoryBankAccount(
        bank_name="中国工商银行",
        bank_code="102100099996",
        account_name=name,
        account_number=f"6222{code}{int(code) % 9973:08d}",
    )


def world_paths(base_dir: Path) -> Paths:
    """Where a provisioned world keeps its files: ``data/``, ``secrets/`` and ``directory.json``
    under ``base_dir``."""
    return Paths(
        data_dir=base_dir / "data",
        secrets_dir=base_dir / "secrets",
        directory=base_dir / "directory.json",
    )


@dataclass
class Provisioned:
    """What `provision` made, and how to configure each agent against it."""

    base_dir: Path
    vhost: str
    endpoint: BrokerEndpoint
    profiles: tuple[AgencyProfile, ...]
    credentials: AgencyCredentials
    user_prefix: str
    retry_delays_ms: tuple[int, ...]
    spec: TopologySpec

    @property
    def paths(self) -> Paths:
        """Every file of this world (stores, ledgers, the report, credentials, keys)."""
        return world_paths(self.base_dir)

    @property
    def directory_path(self) -> Path:
        return self.paths.directory

    @property
    def secrets_dir(self) -> Path:
        return self.paths.secrets_dir

    @property
    def data_dir(self) -> Path:
        return self.paths.data_dir

    def profile(self, code: str) -> AgencyProfile:
        return next(p for p in self.profiles if p.code == code)

    def settings(self, code: str, **overrides: Any) -> AgentSettings:
        profile = self.profile(code)
        values: dict[str, Any] = {
            "agency": code,
            "data_dir": self.data_dir,
            "secrets_dir": self.secrets_dir,
            "directory": self.directory_path,
            "amqp_url": self.endpoint.amqp_url(vhost=self.vhost),
            "regime": profile.regime,
            "accepts_funds": profile.accepts_funds,
            # Demo and test worlds pay out without an operator; an agency's default holds them all.
            "payout_approval_limit_fen": MAX_FEN,
            "retry_delays_ms": self.retry_delays_ms,
            "user_prefix": self.user_prefix,
        }
        values.update(overrides)
        return AgentSettings(**values)

    def teardown(self) -> None:
        """Remove the broker users (global) and the vhost made for this world."""
        with self.endpoint.management() as api:
            delete_agency_users(api, self.spec)
            api.delete_vhost(self.vhost)


def provision(
    endpoint: BrokerEndpoint,
    vhost: str,
    profiles: Sequence[AgencyProfile],
    base_dir: Path,
    *,
    user_prefix: str = "",
    retry_delays_ms: tuple[int, ...] = (1000, 5000, 30000),
    delivery_limit: int = 20,
) -> Provisioned:
    """Keys for every agency and the reconciler, the directory, the topology with one broker user
    per agency, and the secrets files the agents read."""
    base_dir.mkdir(parents=True, exist_ok=True)
    paths = world_paths(base_dir)
    secrets = paths.secrets_dir
    secrets.mkdir(parents=True, exist_ok=True, mode=0o700)
    entries: list[AgencyEntry] = []
    codes = [p.code for p in profiles]
    for profile in [*profiles, AgencyProfile(RECONCILER_CODE)]:
        key = generate_private_key()
        save_private_key(key, paths.private_key(profile.code))
        name = profile.name if profile.code != RECONCILER_CODE else "医保关系转移接续对账中心"
        entries.append(
            AgencyEntry(
                code=profile.code,
                name=name,
                supported_versions=profile.supported_versions(),
                public_key=public_key_to_raw_b64(key),
                bank_account=_bank_account(profile.code, name),
                address=f"{REGION_NAMES.get(profile.code, profile.code)}人民路1号",
                phone="12393",
            )
        )
    AgencyDirectory(entries).save(paths.directory)
    # Signed by an operator key of this world, whose public half every process here trusts.
    operator = generate_private_key()
    save_private_key(operator, secrets / f"{OPERATOR}.ed25519.pem")
    install_operator_key(secrets, operator)
    sign_directory(paths.directory, operator)
    spec = TopologySpec(
        agency_codes=tuple(codes),
        retry_delays_ms=retry_delays_ms,
        delivery_limit=delivery_limit,
        user_prefix=user_prefix,
    )
    with endpoint.management() as api:
        credentials = apply_topology(api, vhost, spec)
    write_credentials(
        secrets,
        credentials,
        vhost,
        {
            code: endpoint.amqp_url(vhost=vhost, username=c.username, password=c.password)
            for code, c in credentials.items()
        },
    )
    return Provisioned(
        base_dir=base_dir,
        vhost=vhost,
        endpoint=endpoint,
        profiles=tuple(profiles),
        credentials=credentials,
        user_prefix=user_prefix,
        retry_delays_ms=retry_delays_ms,
        spec=spec,
    )
