"""deploy/monitoring: the alert rules pass promtool and their unit tests, the scrape configuration is
valid, and the dashboard and the rules name only metrics that jiexu or RabbitMQ export.

The set of jiexu's metric names comes from `agents.service.metrics` itself, so the rules and the
dashboard cannot drift from the code; RabbitMQ's from the checked-in list of what the 3.10
rabbitmq_prometheus plugin exports (its header says where it came from).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agents.service.metrics import AgentMetrics, ReconcilerMetrics

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
RULES = MONITORING / "rules" / "jiexu.rules.yml"
RULE_TESTS = MONITORING / "tests" / "jiexu.rules.test.yml"
DASHBOARD = MONITORING / "grafana" / "jiexu.json"
RABBITMQ_NAMES = MONITORING / "rabbitmq_prometheus-3.10.metrics.txt"
DOCS = ROOT / "docs" / "observability.md"

PROMETHEUS_OWN = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})
"""Series Prometheus writes for every target itself."""

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None and not os.environ.get("CI"),
    reason="promtool not found: `apt-get install prometheus` (Debian's package ships it; CI installs it)",
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None, "CI must have promtool: .ci/run installs Debian's prometheus package"
    return subprocess.run(
        [PROMTOOL, *args], cwd=MONITORING, capture_output=True, text=True, timeout=120, check=False
    )


# -- names --------------------------------------------------------------------------------------


def jiexu_metric_names() -> set[str]:
    """Every sample name the agent and the reconciler export, from their registries."""
    agent = AgentMetrics("110000")
    agent.watch_store(lambda: None)
    reconciler = ReconcilerMetrics()
    reconciler.watch_exchange(lambda: None)
    names: set[str] = set()
    for registry in (agent.registry, reconciler.registry):
        for family in registry.collect():
            if family.type == "counter":
                names |= {f"{family.name}_total", f"{family.name}_created"}
            elif family.type == "histogram":
                names |= {f"{family.name}{s}" for s in ("_bucket", "_sum", "_count", "_created")}
            else:
                names.add(family.name)
    return names


def rabbitmq_metric_names() -> set[str]:
    lines = RABBITMQ_NAMES.read_text(encoding="utf-8").splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
     "offset", "inf", "nan"}
)


def metric_names_in(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, labels or keywords)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for match in re.finditer(r"(?<![\w.$])[a-zA-Z_:][a-zA-Z0-9_:]*", e):
        if e[match.end():].lstrip().startswith("(") or match.group(0) in _KEYWORDS:
            continue
        names.add(match.group(0))
    return names


def test_metric_names_in_finds_metrics_only() -> None:
    expr = (
        'sum by (agency, le) (rate(jiexu_x_bucket{queue=~"a\\\\.b"}[5m])) / on (agency) '
        "max_over_time(up[1h]) > bool 0 or vector(0) and time() - jiexu_y offset 5m"
    )
    assert metric_names_in(expr) == {"jiexu_x_bucket", "up", "jiexu_y"}


def rule_expressions() -> Iterator[tuple[str, str]]:
    for group in yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]:
        for rule in group["rules"]:
            yield rule.get("alert") or rule["record"], rule["expr"]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_expressions() -> Iterator[tuple[str, str]]:
    for panel in panels(dashboard()):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def _grafana_free(expr: str) -> str:
    """The expression as Grafana sends it, with this dashboard's variables filled in."""
    return (
        expr.replace("$__rate_interval", "5m").replace("${agency}", ".+").replace("$agency", ".+")
    )


def test_the_jiexu_names_are_conventional() -> None:
    names = jiexu_metric_names()
    assert len(names) > 40
    for name in names:
        assert re.fullmatch(r"jiexu_[a-z0-9_]+", name), name


def test_rules_and_dashboard_name_only_exported_metrics() -> None:
    known = jiexu_metric_names() | rabbitmq_metric_names() | PROMETHEUS_OWN
    unknown = {
        f"{where}: {name}"
        for where, expr in [*rule_expressions(), *dashboard_expressions()]
        for name in metric_names_in(expr)
        if name not in known
    }
    assert unknown == set()


def test_the_rabbitmq_list_has_the_names_the_alerts_rely_on() -> None:
    names = rabbitmq_metric_names()
    assert {"rabbitmq_detailed_queue_messages", "rabbitmq_detailed_queue_consumers",
            "rabbitmq_identity_info"} <= names


# -- the rules ----------------------------------------------------------------------------------


@needs_promtool
def test_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_scrape_configuration_is_valid() -> None:
    result = promtool("check", "config", str(MONITORING / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_quiet() -> None:
    alerts = {name for name, _ in rule_expressions()}
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert {"JiexuStepOverdue", "JiexuDeadLettersGrowing", "JiexuInboxWithoutConsumer"} <= firing
    assert alerts - firing == set()
    assert alerts - quiet == set()


# -- the dashboard ------------------------------------------------------------------------------


def test_dashboard_has_a_datasource_variable_every_panel_uses() -> None:
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["agency"]["datasource"]["uid"] == "${datasource}"
    uid = "${datasource}"
    data_panels = [p for p in panels(board) if p["type"] != "row"]
    assert len(data_panels) >= 20
    for panel in data_panels:
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid, panel["title"]
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids))


def test_dashboard_combines_jiexu_and_rabbitmq_metrics() -> None:
    used = {name for _, expr in dashboard_expressions() for name in metric_names_in(expr)}
    assert {n for n in used if n.startswith("jiexu_")}
    assert {n for n in used if n.startswith("rabbitmq_")}


@needs_promtool
def test_dashboard_expressions_are_valid_promql(tmp_path: Path) -> None:
    # promtool parses every expression of a rules file: let it check the dashboard's too.
    rules = {
        "groups": [{
            "name": "dashboard",
            "rules": [
                {"record": f"dashboard:expr_{i}", "expr": _grafana_free(expr)}
                for i, (_, expr) in enumerate(dashboard_expressions())
            ],
        }]
    }
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


# -- the docs -----------------------------------------------------------------------------------


def test_the_docs_describe_every_metric_and_alert() -> None:
    text = DOCS.read_text(encoding="utf-8")
    families = {
        re.sub(r"_(total|bucket|sum|count|created)$", "", name) for name in jiexu_metric_names()
    }
    missing = {f for f in families if f not in text}
    assert missing == set()
    assert {name for name, _ in rule_expressions() if name not in text} == set()
