"""`jiexu bench`: the raw aio-pika ceiling and jiexu's transport on the same broker, with ratios."""

from __future__ import annotations

import json

import typer

from agents.bench import BenchConfig, run_bench
from broker.logging import configure_logging
from broker.provider import BrokerUnavailable, acquire_broker

__all__ = ["bench_command"]

_MESSAGES = typer.Option(2000, "--messages", min=1, help="messages per section")
_IN_FLIGHT = typer.Option(500, "--in-flight", min=1, help="publishes awaiting a confirm at once")
_PREFETCH = typer.Option(200, "--prefetch", min=1, help="consumer prefetch in the hop sections")
_JSON = typer.Option(False, "--json", help="print one JSON object on stdout")

_HUMAN = [
    ("raw_publish", "raw aio-pika publish, confirms"),
    ("transport_publish", "jiexu Publisher (sign, confirm)"),
    ("raw_hop", "raw aio-pika hop"),
    ("transport_hop", "jiexu transport hop"),
]


def bench_command(
    messages: int = _MESSAGES,
    in_flight: int = _IN_FLIGHT,
    prefetch: int = _PREFETCH,
    as_json: bool = _JSON,
) -> None:
    """Measure, in one run on one broker, raw aio-pika against jiexu's transport.

    The broker is JIEXU_AMQP_URL's, else the provider chain's (local broker, container, node).
    """
    configure_logging(level="WARNING", json=as_json)
    try:
        provided = acquire_broker()
    except BrokerUnavailable as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    try:
        result = run_bench(
            provided.endpoint,
            BenchConfig(messages=messages, in_flight=in_flight, prefetch=prefetch),
        )
    finally:
        provided.close()
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False))
        return
    typer.echo(
        f"broker: {result['broker']}; {result['messages']} messages of ~{result['body_bytes']} "
        f"bytes; {result['in_flight']} in flight; prefetch {result['prefetch']}"
    )
    for key, label in _HUMAN:
        if f"{key}_msgs_per_s" in result:
            typer.echo(
                f"  {label:<36} {result[f'{key}_msgs_per_s']:>8,.0f} msg/s"
                f"  {result.get(f'{key}_cpu_us_per_msg', 0):>7,.0f} us CPU/msg (client)"
            )
    for key in ("ratio_publish_vs_raw", "ratio_transport_vs_raw"):
        if key in result:
            typer.echo(f"  {key:<36} {result[key]:>8.2f}")
    if "codec_cpu_us_per_msg" in result:
        steps = ", ".join(f"{k} {v:.0f}" for k, v in result["codec_cpu_us_per_msg"].items())
        typer.echo(f"  codec steps, us CPU/msg: {steps}")
