"""The 360° view's merge history shows the customer's own linking and unlinking of logins (the
`Account Linked` / `Account Unlinked` events the hosted account pages write), with the proof."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from opencdp.accounts.claims import profile_of
from opencdp.system import OpenCDP
from tests.identity_helpers import process


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # a page: one engine is enough
def test_merge_history_lists_linked_and_unlinked_logins(
    cdp: OpenCDP, client: TestClient, write_key: str, as_role: Callable[[str], TestClient]
) -> None:
    for n, (event, properties) in enumerate(
        [
            ("Account Linked", {"provider": "google", "method": "verified_email"}),
            ("Account Linked", {"provider": "acme", "method": "session"}),
            ("Account Unlinked", {"provider": "acme", "linked_by": "session"}),
        ]
    ):
        sent = client.post(
            "/v1/track",
            json={"userId": "acct_links", "event": event, "properties": properties,
                  "timestamp": f"2026-05-0{n + 1}T10:00:00Z"},
            auth=(write_key, ""),
        )  # fmt: skip
        assert sent.status_code == 200, sent.text
    process(cdp.engine)
    profile = profile_of(cdp.engine, cdp.processor.rules, "acct_links")
    assert profile is not None
    page = as_role("analyst").get(f"/profiles/{profile['id']}")
    assert page.status_code == 200, page.text
    merges = page.text.split('id="merges"')[1].split("</section>")[0]
    assert "Account Linked: google, proven by a verified e-mail" in merges
    assert "Account Linked: acme, proven by a signed-in session" in merges
    assert "Account Unlinked: acme" in merges
    assert merges.index("google") < merges.index("Account Unlinked")  # oldest first
