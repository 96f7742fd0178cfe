"""Fixtures for the dashboard: users of each role, signed-in TestClients, demo data (both engines),
and for the browser tests one real server shared by every browser test module."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from opencdp.privacy.consent import seed_default_purposes
from opencdp.system import OpenCDP
from opencdp.ui import users
from tests.ui.browser_env import Dashboard, chromium, running_dashboard, watched_page
from tests.ui.demo_data import fill_shop

PASSWORD = "correct horse battery"
EMAILS = {"admin": "ada@example.com", "marketer": "mia@example.com", "analyst": "ann@example.com"}


#: e-mail → a real argon2id hash of PASSWORD, made by users.hash_password once per session: argon2
#: costs about 0.4 s of CPU per hash on purpose, and nearly every dashboard test makes these users.
_PASSWORD_HASHES: dict[str, str] = {}
_REAL_HASHER = users.hasher


def _create_user(engine: sa.Engine, email: str, role: str, patch: pytest.MonkeyPatch) -> users.User:
    """users.create_user as it is, but with this user's password hash made only once a session
    (unless a test has replaced the hasher). Signing in still verifies it with argon2."""
    if users.hasher is not _REAL_HASHER:
        return users.create_user(engine, email, PASSWORD, role)
    if email not in _PASSWORD_HASHES:
        _PASSWORD_HASHES[email] = users.hash_password(PASSWORD)
    real_hash = users.hash_password
    with patch.context() as scoped:
        scoped.setattr(
            users,
            "hash_password",
            lambda password: _PASSWORD_HASHES[email] if password == PASSWORD else real_hash(password),
        )
        return users.create_user(engine, email, PASSWORD, role)


@pytest.fixture
def ui_users(cdp: OpenCDP, monkeypatch: pytest.MonkeyPatch) -> dict[str, users.User]:
    seed_default_purposes(cdp.engine)  # PostgreSQL tests truncate every table, seeded rows included
    return {role: _create_user(cdp.engine, email, role, monkeypatch) for role, email in EMAILS.items()}


@pytest.fixture
def shop(cdp: OpenCDP) -> OpenCDP:
    """A small demo shop (40 customers) processed into profiles, plus the injection customer."""
    fill_shop(cdp.engine, customers=40)
    return cdp


def login_token(client: TestClient) -> str:
    page = client.get("/login")
    assert page.status_code == 200
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found
    return found.group(1)


def sign_in(client: TestClient, email: str, password: str = PASSWORD, next_url: str = "/") -> httpx2.Response:
    token = login_token(client)
    return client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": token, "next": next_url},
        follow_redirects=False,
    )


def csrf_token(client: TestClient, page: str = "/segments") -> str:
    response = client.get(page)
    assert response.status_code == 200, response.text
    found = re.search(r'<meta name="csrf-token" content="([^"]+)">', response.text)
    assert found
    return found.group(1)


@pytest.fixture
def as_role(client: TestClient, ui_users: dict[str, users.User]) -> Callable[[str], TestClient]:
    """Sign the test client in as the user of a role (signing out whoever was signed in)."""

    def signed(role: str) -> TestClient:
        client.cookies.clear()
        response = sign_in(client, EMAILS[role])
        assert response.status_code == 303, response.text
        return client

    return signed


# --- Browser tests (test_ui_browser*.py) ------------------------------------------------------


@pytest.fixture(scope="session")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """`opencdp serve` on the demo shop: started once (it takes a while), shared by every browser
    test, so each test uses names of its own."""
    with running_dashboard(tmp_path_factory.mktemp("dashboard")) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Per module, not per session: Playwright's sync API keeps an event loop running in the main
    thread while it is open, and later tests that call asyncio.run() would fail."""
    with chromium() as instance:
        yield instance


@pytest.fixture
def page(browser: Any, dashboard: Dashboard) -> Iterator[Any]:
    """A fresh browser context per test; any script error or CSP violation fails the test."""
    with watched_page(browser) as fresh:
        yield fresh
