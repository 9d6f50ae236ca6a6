"""Tooling around the exchange: the demo, the bench, provisioning, seeding, status, scenarios.

Nothing outside `agents.tools` and `agents.cli` imports it."""

__all__: list[str] = []
