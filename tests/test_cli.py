"""The command line, run as a user runs it (a subprocess), on both engines."""

from __future__ import annotations

import subprocess
import sys

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
