"""`jiexu bench` runs end to end at a tiny size; the figures are printed, never asserted."""

from __future__ import annotations

import json

import pytest
import structlog
from typer.testing import CliRunner

from agents.cli import app

KEYS = (
    "raw_publish_msgs_per_s",
    "raw_hop_msgs_per_s",
    "signed_hop_msgs_per_s",
    "ratio_signed_hop_vs_raw",
    "transport_publish_msgs_per_s",
    "transport_hop_msgs_per_s",
    "ratio_transport_vs_raw",
    "ratio_publish_vs_raw",
    "transport_steps_us_per_msg",
    "codec_cpu_us_per_msg",
)
STEPS = ("decode", "verify", "validate", "build_answer", "sign_and_encode", "properties", "other")


def test_bench_prints_one_json_object_with_every_figure(
    capsys: pytest.CaptureFixture[str],
) -> None:
    saved = structlog.get_config()
    try:
        # The full flow has its own test (test_bench_flow.py).
        result = CliRunner().invoke(app, ["bench", "--messages", "40", "--no-flow", "--json"])
    finally:
        structlog.configure(**saved)
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert set(KEYS) <= set(figures)
    assert figures["messages"] == 40
    # Every step of the hop was timed on every message (the section refuses otherwise).
    assert set(figures["transport_steps_us_per_msg"]) == set(STEPS)
    assert all(figures["transport_steps_us_per_msg"][step] > 0 for step in STEPS[:-1])
    with capsys.disabled():
        print("\nbench (40 messages):", json.dumps({k: figures[k] for k in KEYS}))
