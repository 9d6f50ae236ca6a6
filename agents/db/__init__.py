"""Database plumbing shared by the SQL adapters (store, ledger, reconciliation report): the SQLite
connection with group commit, the JSON/timestamp codec, and PostgreSQL's ``LISTEN`` (`listen`)."""

__all__: list[str] = []
