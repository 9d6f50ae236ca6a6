"""The README's first command: `jiexu demo` runs every branch, reconciles, and the money adds up."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from agents.tools.scenarios import BRANCHES

JIEXU = str(Path(sys.executable).with_name("jiexu"))


def test_the_demo_runs_every_branch_reconciles_and_conserves_money(tmp_path: Path) -> None:
    # With JIEXU_METRICS_PORT set, the demo says where to scrape each agent and the reconciler.
    metrics = {"JIEXU_METRICS_PORT": "0", "JIEXU_METRICS_HOST": "127.0.0.1"}
    completed = subprocess.run(
        [JIEXU, "demo", "--agencies", "5", "--transfers", str(len(BRANCHES)), "--json",
         "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **metrics},
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary = json.loads(completed.stdout)  # stdout holds the JSON object and nothing else
    for key in ("transfers", "completed", "rejected", "reconciled_matched", "reconciled_mismatched",
                "money_before_fen", "money_after_fen", "paid_out_fen", "elapsed_s",
                "transfers_per_s", "latency_ms"):
        assert key in summary
    assert set(summary["latency_ms"]) >= {"p50", "p99"}
    assert set(summary["outcomes_by_branch"]) == {b.name for b in BRANCHES}
    assert summary["unexpected_outcomes"] == []
    assert summary["unfinished"] == 0
    # One duplicate application on top of one per branch.
    assert summary["transfers"] == len(BRANCHES) + 1
    assert summary["completed"] + summary["rejected"] == summary["transfers"]
    assert summary["reconciled_mismatched"] == 0
    # Every case that reached an outgoing agency is reconciled; none is left pending.
    assert summary["reconciliation_pending"] == 0, summary["reconciliation_pending_cases"]
    assert summary["reconciliation_pending_cases"] == []
    assert 0 < summary["reconciliation_expected"] < summary["transfers"]
    assert summary["reconciled_matched"] == summary["reconciliation_expected"]
    assert summary["transfers_planned"] == len(BRANCHES)
    assert summary["money_before_fen"] == summary["money_after_fen"] + summary["paid_out_fen"]
    assert summary["paid_out_fen"] > 0
    assert summary["overdue_cases"] == 0
    # One line per agent and one for the reconciler on stderr, none on stdout.
    scrape = re.compile(r"^scrape (agent|reconciler) (\d{6}): http://127\.0\.0\.1:\d+/metrics ")
    found = {m.group(2): m.group(1) for m in map(scrape.match, completed.stderr.splitlines()) if m}
    assert found == {**{code: "agent" for code in summary["agencies"]}, "000000": "reconciler"}
