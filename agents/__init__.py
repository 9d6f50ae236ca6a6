"""The agency agent, the case state machine, the store, the ledger port and the command line."""

__all__: list[str] = []
