"""`jiexu status` shows where each inbox lives: leader, members, and the members that are missing."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from agents.cli.status_cmd import inbox_replicas_lines, inbox_replicas_table

NODES = ("rabbit@node1", "rabbit@node2", "rabbit@node3")


def _agency(leader: str | None, members: tuple[str, ...], missing: tuple[str, ...]) -> dict[str, Any]:
    return {
        "inbox": {"exists": True, "leader": leader, "members": list(members), "missing": list(missing)},
        "dead_letters": 0,
        "waiting_retry": 0,
    }


def _render(agencies: dict[str, Any]) -> str:
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None)
    table = inbox_replicas_table(agencies)
    assert table is not None
    console.print(table)
    for line in inbox_replicas_lines(agencies):
        console.print(line, markup=False, soft_wrap=True)
    return out.getvalue()


def test_a_whole_cluster_shows_leader_and_members_and_no_warning_line() -> None:
    text = _render({"110000": _agency("rabbit@node2", NODES, ())})
    row = next(line for line in text.splitlines() if "110000" in line)
    assert "rabbit@node2" in row and "3 of 3" in row
    for node in NODES:
        assert node in text
    assert "missing" in text  # the column header
    assert "members missing" not in text
    assert inbox_replicas_lines({"110000": _agency("rabbit@node2", NODES, ())}) == []


def test_a_missing_member_is_counted_named_and_told_in_a_line_of_its_own() -> None:
    agencies = {
        "110000": _agency("rabbit@node1", NODES, ("rabbit@node3",)),
        "440300": _agency("rabbit@node2", NODES, ()),
    }
    text = _render(agencies)
    row = next(line for line in text.splitlines() if "110000" in line)
    assert "2 of 3" in row
    assert inbox_replicas_lines(agencies) == [
        "inbox of 110000: 1 of 3 members missing (rabbit@node3); leader rabbit@node1"
    ]
    assert text.rstrip().endswith("leader rabbit@node1")


def test_an_inbox_without_a_leader_says_none() -> None:
    agencies = {"110000": _agency(None, NODES, ("rabbit@node1", "rabbit@node2"))}
    text = _render(agencies)
    assert "none" in next(line for line in text.splitlines() if "110000" in line)
    assert inbox_replicas_lines(agencies) == [
        "inbox of 110000: 2 of 3 members missing (rabbit@node1, rabbit@node2); leader none"
    ]


def test_no_table_when_no_inbox_has_members() -> None:
    assert inbox_replicas_table({"110000": {"inbox": {"exists": False}}}) is None
    assert inbox_replicas_table({}) is None
    assert inbox_replicas_lines({"110000": {"inbox": {"exists": False}}}) == []
