"""Small figures the demo and the bench both report: percentiles and a latency summary."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

__all__ = ["latency_summary", "percentile"]


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    if not sorted_values:
        return 0.0
    if len(sorted_values) == 1:
        return sorted_values[0]
    return statistics.quantiles(sorted_values, n=100, method="inclusive")[int(pct) - 1]


def latency_summary(sorted_ms: Sequence[float]) -> dict[str, float]:
    """p50, p99 and max of sorted latencies in ms, to a tenth."""
    return {
        "p50": round(percentile(sorted_ms, 50), 1),
        "p99": round(percentile(sorted_ms, 99), 1),
        "max": round(sorted_ms[-1], 1) if sorted_ms else 0.0,
    }
