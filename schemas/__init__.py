"""The message contracts between agencies: envelope, documents, registry."""

__all__: list[str] = []
