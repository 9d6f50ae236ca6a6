"""What an agency uses in its own test suite: the store and ledger contract suites and in-memory
fakes that pass them."""

__all__: list[str] = []
