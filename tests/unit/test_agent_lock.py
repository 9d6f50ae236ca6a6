"""The agent image's lock (deploy/images/agent/requirements.lock) against pyproject.toml: every
runtime dependency is pinned at a version its requirement (floors included) allows, every pin has
hashes, and the lock was made from the dependency list as it is now (else: run lock.sh)."""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "deploy" / "images" / "agent" / "requirements.lock"
DEPENDENCIES: list[str] = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"][
    "dependencies"
]
REGENERATE = "run deploy/images/agent/lock.sh (PIP=.venv/bin/pip) and commit requirements.lock"


def _entries(text: str) -> list[str]:
    """The lock's requirement lines, each with its continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.startswith("#")]


def _pins(text: str) -> dict[str, tuple[Version, list[str]]]:
    pins: dict[str, tuple[Version, list[str]]] = {}
    for entry in _entries(text):
        head, *options = entry.split()
        name, sep, version = head.partition("==")
        assert sep, f"requirements.lock: {head!r} is not pinned name==version; {REGENERATE}"
        hashes = [o.removeprefix("--hash=sha256:") for o in options if o.startswith("--hash=sha256:")]
        assert len(hashes) == len(options), f"requirements.lock: {head}: only --hash=sha256: options"
        pins[canonicalize_name(name)] = (Version(version), hashes)
    return pins


def _header(text: str, key: str) -> str | None:
    match = re.search(rf"^# {re.escape(key)}: ([^;\s]+)", text, re.MULTILINE)
    return match.group(1) if match else None


def dependencies_digest(dependencies: list[str]) -> str:
    """What lock.sh writes as ``# dependencies-digest:``."""
    return hashlib.sha256("\n".join(sorted(dependencies)).encode()).hexdigest()[:16]


LOCK_TEXT = LOCK.read_text("utf-8")
PINS = _pins(LOCK_TEXT)


def test_the_lock_was_made_from_the_current_dependency_list() -> None:
    recorded = _header(LOCK_TEXT, "dependencies-digest")
    assert recorded == dependencies_digest(DEPENDENCIES), (
        f"requirements.lock is stale: pyproject.toml's dependencies changed since it was made; "
        f"{REGENERATE}"
    )


@pytest.mark.parametrize("requirement", DEPENDENCIES)
def test_every_runtime_dependency_is_pinned_at_a_version_it_allows(requirement: str) -> None:
    wanted = Requirement(requirement)
    name = canonicalize_name(wanted.name)
    assert name in PINS, f"requirements.lock does not pin {wanted.name}; {REGENERATE}"
    version, _hashes = PINS[name]
    assert wanted.specifier.contains(version, prereleases=True), (
        f"requirements.lock pins {wanted.name}=={version}, outside {wanted.specifier}; {REGENERATE}"
    )


def test_every_pin_has_sha256_hashes() -> None:
    assert PINS, "requirements.lock pins nothing"
    for name, (version, hashes) in PINS.items():
        assert hashes, f"requirements.lock: {name}=={version} has no --hash"
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), f"{name}: not a sha256"


def test_the_lock_names_the_python_build_sh_installs_for() -> None:
    assert _header(LOCK_TEXT, "python") == "3.11", "build.sh reads '# python: X.Y;' from the lock"


def test_a_changed_dependency_list_is_reported_stale() -> None:
    assert dependencies_digest([*DEPENDENCIES, "leftpad>=1"]) != dependencies_digest(DEPENDENCIES)
    assert dependencies_digest(list(reversed(DEPENDENCIES))) == dependencies_digest(DEPENDENCIES)


def test_the_test_extra_is_not_locked_into_the_image() -> None:
    assert "testcontainers" not in PINS and "pytest" not in PINS
