"""Provisioning on a broker other deployments may share: never change a password one did not set.

Broker users are global to a RabbitMQ node (not per vhost), so two deployments on one broker that
name their agencies' users alike (no ``--user-prefix``, or the same one) would share them; a second
`apply_topology` that set passwords would lock the first deployment's agents out. Here a user is

* **created** when it does not exist (with the password already in the secrets, else a new one);
* **kept** when it exists: its password is not touched. If the caller knows it (its own secrets
  from an earlier run) the credential is returned; otherwise it is not (``password_known`` false)
  and that agency gets no credential from this run;
* **rotated** only when the caller asks (``rotate``): a new password is set and returned.

Permissions on the target vhost are set for every user either way (they are per vhost, so another
deployment's vhost is not affected).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from broker.management import ManagementClient
from broker.topology import (
    AgencyCredential,
    AgencyCredentials,
    TopologySpec,
    apply_topology,
    generate_password,
)

__all__ = ["ProvisionedUsers", "UserAction", "apply_topology_safely"]

UserAction = Literal["created", "kept", "rotated"]


@dataclass(frozen=True)
class ProvisionedUsers:
    """What one run did to each agency's broker user, and the credentials it can vouch for."""

    actions: dict[str, UserAction]
    """Agency code -> created, kept or rotated."""
    credentials: AgencyCredentials
    """The logins whose password this run knows (created, rotated, or kept with a known one)."""
    unknown_password: list[str] = field(default_factory=list)
    """Codes whose user was kept but whose password the caller does not hold."""

    def codes(self, action: UserAction) -> list[str]:
        return sorted(code for code, done in self.actions.items() if done == action)


def apply_topology_safely(
    api: ManagementClient,
    vhost: str,
    spec: TopologySpec,
    known: Mapping[str, str] | None = None,
    *,
    rotate: bool = False,
) -> ProvisionedUsers:
    """`apply_topology`, creating missing users and leaving existing ones' passwords alone
    unless ``rotate``. ``known``: code -> the password the caller holds for that user."""
    known = dict(known or {})
    actions: dict[str, UserAction] = {}
    passwords: dict[str, str] = {}
    keep: set[str] = set()
    for code in spec.codes:
        exists = api.get_user(spec.user(code)) is not None
        if not exists:
            actions[code] = "created"
            passwords[code] = known.get(code) or generate_password()
        elif rotate:
            actions[code] = "rotated"
            passwords[code] = generate_password()
        else:
            actions[code] = "kept"
            keep.add(code)
            if code in known:
                passwords[code] = known[code]
    applied = apply_topology(api, vhost, spec, passwords, keep=keep)
    unknown = sorted(code for code in keep if code not in known)
    credentials = {
        code: AgencyCredential(code, cred.username, cred.password)
        for code, cred in applied.items()
        if code not in unknown
    }
    return ProvisionedUsers(actions, credentials, unknown)
