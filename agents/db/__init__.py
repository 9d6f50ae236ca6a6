"""Database plumbing shared by the SQL adapters (store, ledger, reconciliation report): the SQLite
connection with group commit and the JSON/timestamp codec."""

__all__: list[str] = []
