"""`jiexu bench`'s full flow at a tiny size: agents as separate processes, every transfer ends as its
branch says, a backlog drains. The figures are printed, never asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

JIEXU = str(Path(sys.executable).with_name("jiexu"))

TOP_KEYS = (
    "raw_hop_msgs_per_s",
    "flow_msgs_per_s",
    "flow_transfers_per_s",
    "ratio_flow_vs_raw",
    "latency_ms",
    "peak_rss_mb",
    "sizes",
    "rss_ratio_large_vs_small",
    "backlog",
)
SIZE_KEYS = (
    "transfers",
    "flow_msgs_per_s",
    "flow_transfers_per_s",
    "ratio_flow_vs_raw",
    "latency_ms",
    "peak_rss_mb",
    "messages_published",
    "cpu_s",
    "outcomes",
    "unexpected_outcomes",
)
AGENCIES = 3


def test_the_full_flow_runs_every_transfer_through_agent_processes(tmp_path: Path) -> None:
    completed = subprocess.run(
        [JIEXU, "bench", "--messages", "40", "--transfers", "20", "--backlog", "50",
         "--agencies", str(AGENCIES), "--json", "--work-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ},
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    figures = json.loads(completed.stdout)  # stdout holds the JSON object and nothing else
    assert set(TOP_KEYS) <= set(figures)
    assert set(figures["latency_ms"]) >= {"p50", "p99"}
    assert [size["transfers"] for size in figures["sizes"]] == [2, 20]
    for size in figures["sizes"]:
        assert set(SIZE_KEYS) <= set(size)
        assert size["finished"] is True
        assert size["unexpected_outcomes"] == 0, size["unexpected_examples"]
        assert size["outcomes"].get("unfinished", 0) == 0
        assert sum(size["outcomes"].values()) == size["applications"] >= size["transfers"]
        assert size["money_conserved"] is True
        assert size["messages_published"]["agents"] > 0
        assert size["messages_published"]["reconciler"] > 0
        # One peak RSS per agent process and one for the reconciler's.
        assert len(size["peak_rss_mb"]) == AGENCIES + 1
        assert all(mb and mb > 0 for mb in size["peak_rss_mb"].values())
        assert all(code == 0 for code in size["exit_codes"].values()), size["exit_codes"]
    backlog = figures["backlog"]
    assert backlog["finished"] is True
    assert backlog["applications"] >= 50
    assert backlog["unexpected_outcomes"] == 0
    assert backlog["money_conserved"] is True
    assert backlog["reconciled"].get("mismatched", 0) == 0
    assert sum(backlog["reconciled"].values()) > 0
    assert set(backlog["rss_mb"]) == set(figures["sizes"][-1]["peak_rss_mb"])
    for rss in backlog["rss_mb"].values():
        assert {"first", "last", "peak"} <= set(rss)
    # Every agent's log is kept with the work directory.
    assert list(tmp_path.glob("flow-20/logs/*.log"))
    print(
        "\nbench flow (20 transfers, backlog 50):",
        json.dumps({k: figures[k] for k in ("raw_hop_msgs_per_s", "flow_msgs_per_s",
                                            "ratio_flow_vs_raw", "latency_ms", "peak_rss_mb")}),
        json.dumps({k: backlog[k] for k in ("drain_s", "drain_transfers_per_s", "rss_mb")}),
    )
