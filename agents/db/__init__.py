"""Database plumbing shared by the SQL adapters (store, ledger, reconciliation report): the SQLite
connection with group commit, the JSON/timestamp codec, and what the PostgreSQL adapters share
(`postgres`: the transient errors, the schema-name check, ``LISTEN``)."""

__all__: list[str] = []
