"""Dependencies (issue 13): floors past published advisories, and testcontainers only in the test
extra, imported lazily by the container fallback, which says what to install when it is missing."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

from broker import provider

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text("utf-8"))


def _requirement(name: str, group: list[str]) -> str:
    return next(r for r in group if r.split(">")[0].split("<")[0].split("=")[0].strip().lower() == name)


def test_runtime_dependencies_do_not_include_testcontainers() -> None:
    runtime = PYPROJECT["project"]["dependencies"]
    assert not any(r.startswith("testcontainers") for r in runtime)
    assert any(r.startswith("testcontainers") for r in PYPROJECT["project"]["optional-dependencies"]["test"])


@pytest.mark.parametrize(
    ("name", "floor"), [("cryptography", ">=50.0.0"), ("pynacl", ">=1.6.2"), ("fonttools", ">=4.60.2")]
)
def test_floors_are_past_the_known_advisories(name: str, floor: str) -> None:
    assert floor in _requirement(name, PYPROJECT["project"]["dependencies"])


def test_the_container_fallback_says_what_to_install_when_testcontainers_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "testcontainers", None)
    monkeypatch.setitem(sys.modules, "testcontainers.core", None)
    monkeypatch.setitem(sys.modules, "testcontainers.core.container", None)
    with pytest.raises(provider._ProviderFailed) as failed:
        provider._from_container({})
    assert "testcontainers is not installed" in failed.value.why
    assert "jiexu[test]" in failed.value.fix
