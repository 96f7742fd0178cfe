"""`opencdp users …`, run as a user runs it (a subprocess) and with prompts (CliRunner)."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from opencdp.config import Settings
from opencdp.store.database import create_engine
from opencdp.ui import users
from opencdp.ui.cli import users_group


def run(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opencdp", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_users_lifecycle(env_for: dict[str, str], settings: Settings) -> None:
    created = run(
        "users",
        "create",
        "--email",
        "Mia@Example.com",
        "--role",
        "marketer",
        "--password-stdin",
        env=env_for,
        stdin="a long enough password\n",
    )
    assert created.returncode == 0, created.stderr
    assert "user mia@example.com created with role marketer" in created.stdout
    again = run(
        "users",
        "create",
        "--email",
        "mia@example.com",
        "--role",
        "admin",
        "--password-stdin",
        env=env_for,
        stdin="a long enough password\n",
    )
    assert again.returncode == 1 and "already exists" in again.stderr and "Traceback" not in again.stderr
    short = run(
        "users",
        "create",
        "--email",
        "x@example.com",
        "--role",
        "admin",
        "--password-stdin",
        env=env_for,
        stdin="short\n",
    )
    assert short.returncode == 1 and "at least 10 characters" in short.stderr
    role = run(
        "users", "create", "--email", "x@example.com", "--role", "owner", "--password-stdin", env=env_for
    )
    assert role.returncode == 2 and "owner" in role.stderr
    listing = run("users", "list", env=env_for).stdout
    assert "mia@example.com\tmarketer\tenabled" in listing and "argon2" not in listing

    engine = create_engine(settings)
    try:
        assert users.authenticate(engine, "mia@example.com", "a long enough password") is not None
        assert run("users", "disable", "mia@example.com", env=env_for).returncode == 0
        assert users.authenticate(engine, "mia@example.com", "a long enough password") is None
        assert run("users", "enable", "mia@example.com", env=env_for).returncode == 0
        assert run("users", "set-role", "mia@example.com", "analyst", env=env_for).returncode == 0
        assert users.get_user(engine, "mia@example.com").role == "analyst"
        changed = run(
            "users",
            "set-password",
            "mia@example.com",
            "--password-stdin",
            env=env_for,
            stdin="another long password\n",
        )
        assert changed.returncode == 0
        assert users.authenticate(engine, "mia@example.com", "another long password") is not None
        missing = run("users", "disable", "nobody@example.com", env=env_for)
        assert missing.returncode == 1 and "no user with e-mail" in missing.stderr
    finally:
        engine.dispose()


def test_password_is_asked_twice(env_for: dict[str, str], settings: Settings) -> None:
    runner = CliRunner()
    args = ["create", "--email", "ada@example.com", "--role", "admin"]
    mismatch = runner.invoke(
        users_group,
        args,
        input="first password 1\nsecond password 2\nfirst password 1\nfirst password 1\n",
        env=env_for,
    )
    assert mismatch.exit_code == 0, mismatch.output
    assert "Error: The two entered values do not match." in mismatch.output
    assert "first password 1" not in mismatch.output  # not echoed
    engine = create_engine(settings)
    try:
        assert users.authenticate(engine, "ada@example.com", "first password 1") is not None
    finally:
        engine.dispose()
