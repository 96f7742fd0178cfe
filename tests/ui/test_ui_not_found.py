"""Unknown addresses: browsers get the dashboard's HTML error page, the APIs keep their JSON 404s."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from opencdp.ui import users

PAGES = ("/nonsense", "/profiles/xyz/nothing", "/segments/1/nothing/else", "/ui/nothing", "/docs/nothing")
APIS = ("/api/nonsense", "/v1/nonsense", "/ui/api/nonsense", "/metrics/nonsense", "/api", "/v1")


def _is_error_page(response: object, status: int = 404) -> None:
    assert getattr(response, "status_code", None) == status
    headers = getattr(response, "headers", {})
    text = getattr(response, "text", "")
    assert headers["content-type"].startswith("text/html"), text
    assert "<h1>Not found</h1>" in text and '<a href="/">Overview</a>' in text
    assert '{"' not in text and "detail" not in text
    assert headers["content-security-policy"].startswith("default-src 'none'")
    assert headers["x-frame-options"] == "DENY"


def test_unknown_pages_get_the_html_error_page_signed_out(
    client: TestClient, ui_users: dict[str, users.User]
) -> None:
    for path in PAGES:
        response = client.get(path, follow_redirects=False)
        _is_error_page(response)
        assert 'class="topbar"' not in response.text  # nothing about the dashboard leaks
    assert client.head("/nonsense").status_code == 404


def test_unknown_pages_get_the_html_error_page_signed_in(
    client: TestClient, as_role: Callable[[str], TestClient]
) -> None:
    as_role("admin")
    for path in PAGES:
        _is_error_page(client.get(path, follow_redirects=False))
    wrong_method = client.get("/logout", follow_redirects=False)  # a form target, not a page
    _is_error_page(wrong_method, 405)
    assert wrong_method.headers["allow"] == "POST"


def test_api_paths_keep_json_404s(client: TestClient, as_role: Callable[[str], TestClient]) -> None:
    for signed_in in (False, True):
        if signed_in:
            as_role("analyst")
        for path in APIS:
            response = client.get(path, follow_redirects=False)
            assert response.status_code == 404, path
            assert response.headers["content-type"].startswith("application/json"), path
    assert client.post("/v1/nonsense", json={}).headers["content-type"].startswith("application/json")
