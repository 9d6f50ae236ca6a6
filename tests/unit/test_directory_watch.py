"""The directory of a running process reloaded from its file (issue 13): verified as at start, a
bad file refused with one warning while the directory in force stays, never a fall back to an
unsigned file once a signed one was in force."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from agents.service.directory_watch import DirectoryWatch
from broker.directory import AgencyDirectory, DirectoryError, UnknownAgency
from broker.directory_trust import install_operator_key, sign_directory, signature_path
from broker.signing import generate_private_key, public_key_to_raw_b64
from tests.unit.test_directory import _agency

OPERATOR = generate_private_key()
KEYS = {code: generate_private_key() for code in ("110000", "320100", "440300")}


def _write(path: Path, codes: list[str], *, sign: bool = True, **changes: Any) -> None:
    entries = [_agency(code, public_key_to_raw_b64(KEYS[code]), **changes) for code in codes]
    AgencyDirectory.parse(json.dumps({"agencies": entries})).save(path)
    if sign:
        sign_directory(path, OPERATOR)


def _watch(tmp_path: Path, env: dict[str, str] | None = None) -> DirectoryWatch:
    path = tmp_path / "directory.json"
    _write(path, ["110000", "320100"])
    install_operator_key(tmp_path / "secrets", OPERATOR)
    return DirectoryWatch.open(path, tmp_path / "secrets", env=env or {})


def _events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


def test_a_changed_signed_file_is_put_in_force_once_it_has_settled(tmp_path: Path) -> None:
    watch = _watch(tmp_path)
    seen: list[AgencyDirectory] = []
    watch.listen(seen.append)
    first = watch.current.version
    assert not watch.poll()  # unchanged
    _write(watch.path, ["110000", "320100", "440300"])
    with capture_logs() as logs:
        assert not watch.poll()  # seen changing: looked at again at the next check
        assert watch.poll()
        assert not watch.poll()
    assert watch.directory.codes == ("110000", "320100", "440300")
    assert [d.codes for d in seen] == [watch.directory.codes]
    (event,) = _events(logs, "directory_reloaded")
    assert event["added"] == ["440300"] and event["removed"] == []
    assert event["version"] == watch.current.version != first == event["previous_version"]
    assert event["log_level"] == "info"


def test_a_bad_file_is_refused_with_one_warning_and_the_directory_in_force_stays(
    tmp_path: Path,
) -> None:
    watch = _watch(tmp_path)
    before = watch.current
    # Changed after signing (an account diverted): the signature does not verify.
    text = watch.path.read_text("utf-8").replace("0200001234567890123", "0200009999999999999")
    watch.path.write_text(text, encoding="utf-8")
    with capture_logs() as logs:
        for _ in range(4):
            assert not watch.poll()
    (warning,) = _events(logs, "directory_reload_refused")
    assert warning["log_level"] == "warning" and "does not verify" in warning["error"]
    assert warning["version_in_force"] == before.version
    assert watch.current is before and watch.refusals == 1
    # Not JSON, not the schema: refused the same way, on SIGHUP as on a change.
    for content, problem in (("{not json", "not valid JSON"), ('{"agencies": 3}', "not a valid")):
        watch.path.write_text(content, encoding="utf-8")
        sign_directory(watch.path, OPERATOR)
        with capture_logs() as logs:
            assert not watch.reload("sighup")
        (warning,) = _events(logs, "directory_reload_refused")
        assert problem in warning["error"] and watch.current is before


def test_once_signed_never_unsigned_whatever_the_setting(tmp_path: Path) -> None:
    watch = _watch(tmp_path, env={"JIEXU_ALLOW_UNSIGNED_DIRECTORY": "true"})
    assert watch.current.verified
    _write(watch.path, ["110000", "320100", "440300"], sign=False)
    signature_path(watch.path).unlink()
    with capture_logs() as logs:
        assert not watch.reload("sighup")
    (warning,) = _events(logs, "directory_reload_refused")
    assert "no signature" in warning["error"]
    assert watch.directory.codes == ("110000", "320100")


def test_a_listener_may_refuse_a_directory_and_then_nothing_changes(tmp_path: Path) -> None:
    watch = _watch(tmp_path)
    applied: list[AgencyDirectory] = []

    def own_agency_listed(directory: AgencyDirectory) -> None:
        directory.get("320100")  # UnknownAgency when the file no longer lists it
        applied.append(directory)

    watch.listen(own_agency_listed)
    _write(watch.path, ["110000"])
    with capture_logs() as logs:
        assert not watch.reload("sighup")
    (warning,) = _events(logs, "directory_reload_refused")
    assert "320100" in warning["error"] and not applied
    assert watch.directory.codes == ("110000", "320100")
    with pytest.raises(UnknownAgency):
        own_agency_listed(AgencyDirectory.parse(watch.path.read_text("utf-8")))


def test_sighup_on_an_unchanged_file_says_so(tmp_path: Path) -> None:
    watch = _watch(tmp_path)
    with capture_logs() as logs:
        assert not watch.reload("sighup")
    assert [e["event"] for e in logs] == ["directory_unchanged"]


def test_a_directory_refused_at_start_still_stops_the_process(tmp_path: Path) -> None:
    path = tmp_path / "directory.json"
    _write(path, ["110000"], sign=False)
    with pytest.raises(DirectoryError, match="not trusted"):
        DirectoryWatch.open(path, tmp_path / "secrets", env={})
