"""Dashboard sign-in, sessions, roles and CSRF, in-process on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from opencdp.system import OpenCDP
from opencdp.ui import users
from opencdp.ui.sessions import COOKIE
from opencdp.ui.tables import ui_sessions
from opencdp.ui.web import ui_settings
from tests.ui.conftest import EMAILS, PASSWORD, csrf_token, login_token, sign_in

CRITERIA = {"trait": "country", "op": "eq", "value": "DE"}


def test_every_page_needs_sign_in(client: TestClient, ui_users: dict[str, users.User]) -> None:
    for path in ("/", "/profiles", "/profiles/x", "/segments", "/segments/new", "/reports", "/reports/view"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login?next=")
    api = client.post("/ui/api/segments/preview", json={"criteria": CRITERIA})
    assert api.status_code == 401 and api.json()["error"] == "Please sign in"
    assert client.get("/login").status_code == 200


def test_sign_in_and_out(client: TestClient, ui_users: dict[str, users.User]) -> None:
    wrong = sign_in(client, EMAILS["marketer"], "not the password")
    assert wrong.status_code == 400 and "Wrong e-mail address or password" in wrong.text
    assert COOKIE not in client.cookies

    response = sign_in(client, EMAILS["marketer"].upper(), next_url="/segments")
    assert response.status_code == 303 and response.headers["location"] == "/segments"
    cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith(COOKIE + "="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    page = client.get("/")
    assert page.status_code == 200 and EMAILS["marketer"] in page.text and "marketer" in page.text
    stolen = client.cookies[COOKIE]

    token = csrf_token(client)
    out = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    # the session is gone on the server, not only in this browser
    client.cookies.set(COOKIE, stolen)
    assert client.get("/", follow_redirects=False).status_code == 303


def test_passwords_are_argon2id_hashes(cdp: OpenCDP, ui_users: dict[str, users.User]) -> None:
    with cdp.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT password_hash FROM users").scalars().all()
    assert len(stored) == 3
    assert all(h.startswith("$argon2id$") and PASSWORD not in h for h in stored)
    assert users.authenticate(cdp.engine, EMAILS["admin"], PASSWORD) is not None
    assert users.authenticate(cdp.engine, EMAILS["admin"], PASSWORD + "x") is None
    assert users.authenticate(cdp.engine, "nobody@example.com", PASSWORD) is None
    with pytest.raises(users.UserError, match="at least 10"):
        users.create_user(cdp.engine, "new@example.com", "short", "analyst")
    with pytest.raises(users.UserError, match="already exists"):
        users.create_user(cdp.engine, EMAILS["admin"], PASSWORD, "admin")
    with pytest.raises(users.UserError, match="role must be one of"):
        users.create_user(cdp.engine, "new@example.com", PASSWORD, "owner")


def test_sign_in_form_has_its_own_csrf_and_no_open_redirect(
    client: TestClient, ui_users: dict[str, users.User]
) -> None:
    token = login_token(client)
    forged = client.post(
        "/login",
        data={"email": EMAILS["admin"], "password": PASSWORD, "csrf_token": token + "x"},
        follow_redirects=False,
    )
    assert forged.status_code == 403 and "expired" in forged.text
    client.cookies.clear()
    no_cookie = client.post(
        "/login", data={"email": EMAILS["admin"], "password": PASSWORD, "csrf_token": token}
    )
    assert no_cookie.status_code == 403
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        client.cookies.clear()
        response = sign_in(client, EMAILS["admin"], next_url=target)
        assert response.status_code == 303 and response.headers["location"] == "/"


def test_disabled_user_is_signed_out_at_once(
    client: TestClient, cdp: OpenCDP, as_role: Callable[[str], TestClient]
) -> None:
    as_role("analyst")
    assert client.get("/", follow_redirects=False).status_code == 200
    users.set_disabled(cdp.engine, EMAILS["analyst"], True)
    assert client.get("/", follow_redirects=False).status_code == 303
    assert sign_in(client, EMAILS["analyst"]).status_code == 400
    users.set_disabled(cdp.engine, EMAILS["analyst"], False)
    assert sign_in(client, EMAILS["analyst"]).status_code == 303


@pytest.mark.parametrize("column", ["expires_at", "last_seen_at"])
def test_sessions_expire(
    client: TestClient, cdp: OpenCDP, as_role: Callable[[str], TestClient], column: str
) -> None:
    as_role("marketer")
    assert client.get("/segments", follow_redirects=False).status_code == 200
    settings = ui_settings()
    past = datetime.now(UTC) - (timedelta(seconds=1) if column == "expires_at" else settings.idle)
    with cdp.engine.begin() as conn:
        conn.execute(ui_sessions.update().values({column: past}))
    response = client.get("/segments", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login?next=%2Fsegments"
    with cdp.engine.connect() as conn:  # an expired session is deleted when it is seen
        assert conn.execute(sa.select(sa.func.count()).select_from(ui_sessions)).scalar_one() == 0


def test_session_cookie_lifetime_matches_the_server(
    client: TestClient, ui_users: dict[str, users.User]
) -> None:
    response = sign_in(client, EMAILS["admin"])
    cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith(COOKIE + "="))
    assert f"Max-Age={int(ui_settings().lifetime.total_seconds())}" in cookie


def _posts(segment_id: int, report_id: int) -> list[tuple[str, dict[str, str]]]:
    return [
        ("/logout", {}),
        ("/segments", {"name": "x", "criteria": json.dumps(CRITERIA)}),
        (f"/segments/{segment_id}", {"criteria": json.dumps(CRITERIA)}),
        (f"/segments/{segment_id}/duplicate", {}),
        (f"/segments/{segment_id}/delete", {}),
        ("/reports", {"name": "r", "kind": "events_by_source", "days": "30"}),
        (f"/reports/{report_id}", {"name": "r2", "days": "30"}),
        (f"/reports/{report_id}/delete", {}),
    ]


def _fixtures(client: TestClient) -> tuple[int, int]:
    token = csrf_token(client)
    saved = client.post(
        "/segments",
        data={"name": "Germany", "criteria": json.dumps(CRITERIA), "csrf_token": token},
        follow_redirects=False,
    )
    assert saved.status_code == 303, saved.text
    report = client.post(
        "/reports",
        data={"name": "Daily", "kind": "events_by_source", "days": "14", "csrf_token": token},
        follow_redirects=False,
    )
    assert report.status_code == 303, report.text
    return int(saved.headers["location"].split("/")[2].split("?")[0]), int(
        report.headers["location"].split("/")[2].split("?")[0]
    )


def test_every_post_checks_the_csrf_token(client: TestClient, as_role: Callable[[str], TestClient]) -> None:
    as_role("admin")
    segment_id, report_id = _fixtures(client)
    token = csrf_token(client)
    for path, data in _posts(segment_id, report_id):
        assert client.post(path, data=data).status_code == 403, path
        assert client.post(path, data={**data, "csrf_token": "wrong"}).status_code == 403, path
        cross = client.post(
            path, data={**data, "csrf_token": token}, headers={"Origin": "https://evil.example"}
        )
        assert cross.status_code == 403, path
        assert "This form has expired" in cross.text
    preview = client.post("/ui/api/segments/preview", json={"criteria": CRITERIA})
    assert preview.status_code == 403 and preview.json()["error"] == "This form has expired"
    ok = client.post("/ui/api/segments/preview", json={"criteria": CRITERIA}, headers={"X-CSRF-Token": token})
    assert ok.status_code == 200 and ok.json()["count"] == 0
    # nothing above changed anything: the segment and the report are still there
    assert client.get(f"/segments/{segment_id}").status_code == 200
    assert client.get(f"/reports/{report_id}").status_code == 200


def test_analysts_look_but_do_not_change(client: TestClient, as_role: Callable[[str], TestClient]) -> None:
    as_role("marketer")
    segment_id, report_id = _fixtures(client)
    as_role("analyst")
    token = csrf_token(client)
    for path, data in _posts(segment_id, report_id)[1:]:
        response = client.post(path, data={**data, "csrf_token": token})
        assert response.status_code == 403, path
        assert "analyst" in response.text and "can look and export" in response.text
    page = client.get(f"/segments/{segment_id}")
    assert page.status_code == 200 and 'id="save-segment"' not in page.text and "Delete" not in page.text
    assert 'class="primary">Save report' not in client.get(f"/reports/{report_id}").text
    preview = client.post(
        "/ui/api/segments/preview", json={"criteria": CRITERIA}, headers={"X-CSRF-Token": token}
    )
    assert preview.status_code == 200
    export = client.get(f"/segments/{segment_id}/export.csv", params={"purpose": "email_marketing"})
    # analysts may export (no 403); this database has no members, so the page says why instead
    assert (
        export.status_code == 409
        and "Nothing to export: Segment &#39;Germany&#39; has no members" in export.text
    )
    as_role("admin")
    token = csrf_token(client)
    deleted = client.post(
        f"/segments/{segment_id}/delete", data={"csrf_token": token}, follow_redirects=False
    )
    assert deleted.status_code == 303


def test_repeated_wrong_passwords_are_throttled(client: TestClient, ui_users: dict[str, users.User]) -> None:
    email = EMAILS["admin"]
    for _ in range(5):
        assert sign_in(client, email, "guess guess guess").status_code == 400
    blocked = sign_in(client, email)  # even the right password, for a while
    assert blocked.status_code == 429 and "Too many failed sign-ins" in blocked.text


def test_pages_carry_security_headers(client: TestClient, as_role: Callable[[str], TestClient]) -> None:
    as_role("admin")
    for path in ("/", "/login", "/segments/new"):
        headers = client.get(path).headers
        assert "script-src 'self'" in headers["content-security-policy"], path
        assert "default-src 'none'" in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
        assert headers["cache-control"] == "no-store"
    css = client.get("/ui/static/ui.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert client.get("/ui/static/ui.css", headers={"If-None-Match": css.headers["etag"]}).status_code == 304
    assert client.get("/ui/static/..%2Fweb.py").status_code == 404
    assert "/ui/" not in json.dumps(client.get("/openapi.json").json()["paths"])


def test_admins_switch_users_off_and_on(
    client: TestClient, ui_users: dict[str, users.User], as_role: Callable[[str], TestClient]
) -> None:
    analyst = ui_users["analyst"]
    as_role("marketer")
    assert client.get("/users").status_code == 403
    assert 'href="/users"' not in client.get("/").text
    as_role("admin")
    listing = client.get("/users")
    assert listing.status_code == 200 and all(email in listing.text for email in EMAILS.values())
    token = csrf_token(client, "/users")
    assert client.post(f"/users/{analyst.id}/disable").status_code == 403  # no CSRF token
    done = client.post(f"/users/{analyst.id}/disable", data={"csrf_token": token}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/users?done=disabled"
    client.cookies.clear()
    assert sign_in(client, EMAILS["analyst"]).status_code == 400
    as_role("admin")
    token = csrf_token(client, "/users")
    myself = client.post(f"/users/{ui_users['admin'].id}/disable", data={"csrf_token": token})
    assert myself.status_code == 400 and "cannot disable yourself" in myself.text
    client.post(f"/users/{analyst.id}/enable", data={"csrf_token": token})
    client.cookies.clear()
    assert sign_in(client, EMAILS["analyst"]).status_code == 303
