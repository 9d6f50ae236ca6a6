"""The transport on RabbitMQ: topology, publishing, consuming, signing, the test broker."""

__all__: list[str] = []
