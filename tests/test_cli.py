"""The command line, run as a user runs it (a subprocess), on both engines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from opencdp.access.keys import hash_secret
from opencdp.cli import main
from opencdp.config import Settings
from opencdp.store.database import create_engine
from tests.serverproc import opencdp


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opencdp", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_sources_and_keys_lifecycle(env_for: dict[str, str], settings: Settings) -> None:
    write_key = opencdp("sources", "create", "website", env=env_for).strip()
    assert write_key.startswith("wk_") and len(write_key) > 30
    again = run("sources", "create", "website", env=env_for)
    assert again.returncode == 1
    assert "already exists" in again.stderr and "Traceback" not in again.stderr
    listing = opencdp("sources", "list", env=env_for)
    assert "website" in listing and "enabled" in listing and write_key not in listing
    opencdp("sources", "disable", "website", env=env_for)
    assert "disabled" in opencdp("sources", "list", env=env_for)
    missing = run("sources", "disable", "nope", env=env_for)
    assert missing.returncode == 1 and "no source named 'nope'" in missing.stderr

    secret = opencdp("keys", "create", "--role", "admin", "--name", "ops", env=env_for).strip()
    assert secret.startswith("ak_")
    assert "ops" in opencdp("keys", "list", env=env_for)
    assert secret not in opencdp("keys", "list", env=env_for)

    # Only hashes are stored.
    engine = create_engine(settings)
    with engine.connect() as conn:
        dump = "\n".join(
            str(row)
            for table in ("sources", "api_keys")
            for row in conn.exec_driver_sql(f"SELECT * FROM {table}")
        )
    engine.dispose()
    assert write_key not in dump and secret not in dump
    assert hash_secret(write_key) in dump


def test_unknown_role_is_refused(env_for: dict[str, str]) -> None:
    result = run("keys", "create", "--role", "superuser", env=env_for)
    assert result.returncode == 2
    assert "superuser" in result.stderr


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_command_has_help(database_url: str) -> None:
    runner = CliRunner()

    def walk(command: object, path: list[str]) -> None:
        result = runner.invoke(main, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(main, [])


def test_bad_configuration_is_one_clear_line(env_for: dict[str, str]) -> None:
    result = run("sources", "list", env={**env_for, "OPENCDP_SQLITE_SYNCHRONOUS": "sometimes"})
    assert result.returncode == 1
    assert "OPENCDP_SQLITE_SYNCHRONOUS" in result.stderr and "Traceback" not in result.stderr


def test_journeys_save_activate_list_show(env_for: dict[str, str], tmp_path: Path) -> None:
    definition = {"entry": {"event": "Signed Up"}, "steps": [{"id": "a day", "wait": {"days": 1}}]}
    path = tmp_path / "welcome.json"
    path.write_text(json.dumps(definition))
    saved = opencdp("journeys", "save", "welcome", str(path), "--description", "new sign-ups", env=env_for)
    assert "saved as a draft" in saved
    nowhere = {"entry": {"event": "X"}, "steps": [{"id": "a", "send": {"destination": "nowhere"}}]}
    bad = run("journeys", "save", "welcome", json.dumps(nowhere), env=env_for)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "definition.steps.0.send.destination: no destination named 'nowhere'" in bad.stderr
    missing = run("journeys", "activate", "nope", env=env_for)
    assert missing.returncode == 1 and "journey: no journey named 'nope'" in missing.stderr

    assert "is active" in opencdp("journeys", "activate", "welcome", env=env_for)
    definition["steps"].append({"id": "tag", "tag": {"add": "welcomed"}})
    changed = subprocess.run(
        [sys.executable, "-m", "opencdp", "journeys", "save", "welcome", "-"],
        input=json.dumps(definition),
        env=env_for,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert changed.returncode == 0, changed.stderr
    assert "version 2 (active)" in changed.stdout

    listing = opencdp("journeys", "list", env=env_for)
    assert "welcome" in listing and "active" in listing and "v2" in listing and "entered 0" in listing
    shown = opencdp("journeys", "show", "welcome", env=env_for)
    assert "welcome (id 1): active, version 2" in shown and "new sign-ups" in shown
    assert '"id": "tag"' in shown
    assert [
        v["version"] for v in json.loads(opencdp("journeys", "versions", "welcome", "--json", env=env_for))
    ] == [2, 1]
