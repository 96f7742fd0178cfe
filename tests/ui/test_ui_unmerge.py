"""Unmerge in the 360° view (in-process, both engines): admins see an Unmerge button on each link
and an "Allow again" on each rejection; others see neither and are refused; a probabilistic link
shows the matching job's reasons."""

from __future__ import annotations

import re
from collections.abc import Callable

from fastapi.testclient import TestClient

from opencdp.identity.identifiers import Identifier
from opencdp.log.append import LogAppender
from opencdp.match.merges import append_merge
from opencdp.system import OpenCDP
from tests.identity_helpers import RULES, log_messages, process, profile_of
from tests.ui.conftest import csrf_token


def _tablet(cdp: OpenCDP) -> str:
    log_messages(
        cdp.engine,
        [
            {"type": "identify", "userId": "ann", "anonymousId": "tablet", "messageId": "t1",
             "timestamp": "2026-05-01T10:00:00Z"},
            {"type": "identify", "anonymousId": "tablet", "traits": {"email": "bob@example.com"},
             "messageId": "t2", "timestamp": "2026-05-02T10:00:00Z"},
        ],
    )  # fmt: skip
    process(cdp.engine)
    return profile_of(cdp.engine, "user_id", "ann")


def _link_ids(page: str) -> list[int]:
    return [int(n) for n in re.findall(r'name="link_id" value="(\d+)"', page)]


def test_admin_unmerges_and_allows_again(cdp: OpenCDP, as_role: Callable[[str], TestClient]) -> None:
    pid = _tablet(cdp)
    client = as_role("admin")
    page = client.get(f"/profiles/{pid}")
    assert page.status_code == 200 and "Unmerge" in page.text
    bob_link = next(
        int(n)
        for n, body in re.findall(r'<li id="link-(\d+)">(.*?)</li>', page.text, re.S)
        if "bob@example.com" in body
    )
    token = csrf_token(client, f"/profiles/{pid}")
    assert (
        client.post(f"/profiles/{pid}/unmerge", data={"link_id": str(bob_link)}).status_code == 403
    )  # no CSRF
    done = client.post(
        f"/profiles/{pid}/unmerge",
        data={"link_id": str(bob_link), "reason": "shared tablet", "csrf_token": token},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"].endswith("?done=unmerged#merges")
    bob = profile_of(cdp.engine, "email", "bob@example.com")
    assert bob != pid
    shown = client.get(f"/profiles/{bob}?done=unmerged")
    assert "Unmerged: the two identifiers are separate profiles now" in shown.text
    assert re.search(r"rejected by ada@example\.com on .*?: shared tablet", shown.text)
    allow = re.search(r'action="(/profiles/[^"]+/rejections/\d+/allow)"', shown.text)
    assert allow and "Allow again" in shown.text
    again = client.post(allow.group(1), data={"csrf_token": token}, follow_redirects=False)
    assert again.status_code == 303
    assert profile_of(cdp.engine, "email", "bob@example.com") == pid
    assert client.post(allow.group(1), data={"csrf_token": token}).status_code == 404
    bad = client.post(f"/profiles/{pid}/unmerge", data={"link_id": "999999", "csrf_token": token})
    assert bad.status_code == 400 and "No link 999999" in bad.text


def test_only_admins_unmerge(cdp: OpenCDP, as_role: Callable[[str], TestClient]) -> None:
    pid = _tablet(cdp)
    for role in ("marketer", "analyst"):
        client = as_role(role)
        page = client.get(f"/profiles/{pid}")
        assert page.status_code == 200 and not _link_ids(page.text) and "Unmerge</button>" not in page.text
        token = csrf_token(client, f"/profiles/{pid}")
        refused = client.post(f"/profiles/{pid}/unmerge", data={"link_id": "1", "csrf_token": token})
        assert refused.status_code == 403, role
    assert profile_of(cdp.engine, "email", "bob@example.com") == pid


def test_a_probabilistic_link_shows_its_reasons(cdp: OpenCDP, as_role: Callable[[str], TestClient]) -> None:
    log_messages(
        cdp.engine,
        [{"type": "identify", "userId": "dora", "messageId": "d1", "timestamp": "2026-05-01T10:00:00Z"},
         {"type": "page", "anonymousId": "web-9", "messageId": "d2", "timestamp": "2026-05-02T10:00:00Z"}],
    )  # fmt: skip
    process(cdp.engine)
    sentence = "name similar (JW 0.94), same date of birth: match probability 0.998"
    with cdp.engine.begin() as conn:
        append_merge(
            conn,
            LogAppender.for_engine(cdp.engine, RULES),
            Identifier("user_id", "dora"),
            Identifier("anonymous_id", "web-9"),
            {"explanation": sentence, "match_probability": 0.998},
        )
    process(cdp.engine)
    page = as_role("analyst").get(f"/profiles/{profile_of(cdp.engine, 'user_id', 'dora')}")
    assert "probabilistic match (99.8 %)" in page.text and sentence in page.text
