"""Logs carry no secrets or personal data, even when a request fails with a traceback."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
import structlog
from fastapi.testclient import TestClient

from opencdp import logs
from opencdp.system import OpenCDP
from opencdp.ui import users, web
from tests.ui.conftest import login_token

SECRET_PASSWORD = "hunter2-planted-password"
EMAIL = "planted.person@example.com"


@pytest.fixture(params=["console", "json"])
def log_output(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The application's logging chain, writing to a buffer (not cached, so this test sees it)."""
    saved = structlog.get_config()
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buffer)
    logs.configure("INFO", request.param)
    structlog.configure(cache_logger_on_first_use=False)
    monkeypatch.setattr(web, "log", logs.get("opencdp.ui"))  # a proxy cached by an earlier test
    yield buffer
    structlog.configure(**saved)


def test_a_failing_request_logs_no_local_values(
    client: TestClient, cdp: OpenCDP, monkeypatch: pytest.MonkeyPatch, log_output: io.StringIO
) -> None:
    def broken(engine: sa.Engine, email: str, password: str) -> users.User | None:
        person = {"email": email, "password": password}  # noqa: F841  (a local a traceback could show)
        raise RuntimeError("the user table is on fire")

    monkeypatch.setattr(users, "authenticate", broken)
    token = login_token(client)
    response = client.post("/login", data={"email": EMAIL, "password": SECRET_PASSWORD, "csrf_token": token})
    assert response.status_code == 500
    output = log_output.getvalue()
    assert "dashboard request failed" in output and "the user table is on fire" in output  # still useful
    for secret in (token, EMAIL, SECRET_PASSWORD):
        assert secret not in output


def test_sql_errors_do_not_show_their_parameters(cdp: OpenCDP) -> None:
    with pytest.raises(sa.exc.DBAPIError) as failure, cdp.engine.connect() as conn:
        conn.execute(sa.text("SELECT 1 FROM no_such_table WHERE email = :email"), {"email": EMAIL})
    assert EMAIL not in str(failure.value)
