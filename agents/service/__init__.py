"""The application: one unit of work per event around the pure decision, the outbox relay, the
agent process, its settings and its composition root."""

__all__: list[str] = []
