"""The Matching page: in-process on SQLite and PostgreSQL (counts, last run, a pair side by side
with its differences, decisions by role, CSRF, errors, escaping), and in a real browser with the
keyboard against `opencdp serve` (accept with "a" merges the profiles, reject with "r")."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from opencdp.access import audit
from opencdp.identity.identifiers import Identifier
from opencdp.store.schema import identities, match_candidates, match_models, profiles
from opencdp.system import OpenCDP
from tests.identity_helpers import log_messages, process, profile_of
from tests.match.review_data import candidate, identify, people
from tests.ui.browser_env import CHROMIUM, Dashboard, sign_in
from tests.ui.conftest import csrf_token


def _run_summary(cdp: OpenCDP) -> None:
    now = datetime(2026, 6, 2, 8, 0, tzinfo=UTC)
    with cdp.engine.begin() as conn:
        conn.execute(
            match_models.insert().values(
                name="people", config={}, model=None, created_at=now, updated_at=now, last_run_at=now,
                last_summary={
                    "profiles": 1234, "auto_merges": 7, "queued_for_review": 3, "decided_before": 0,
                    "merge_protection": 1, "blocking": [{"rule": "date_of_birth", "pairs": 99}],
                    "seconds": {"read": 1.5},
                },
            )
        )  # fmt: skip


def _decide(client: TestClient, cid: int, decision: str, token: str) -> Any:
    return client.post(
        f"/matching/{cid}/decision",
        data={"decision": decision, "csrf_token": token},
        follow_redirects=False,
    )


def test_the_page_and_decisions_by_role(
    client: TestClient, cdp: OpenCDP, as_role: Callable[[str], TestClient]
) -> None:
    people(cdp.engine)
    log_messages(cdp.engine, [identify(9, anonymous="anon-xss", first_name="<img src=x onerror=alert(1)>")])
    process(cdp.engine)
    _run_summary(cdp)
    anna = candidate(cdp.engine, ("user_id", "u-anna"), ("anonymous_id", "anon-1"), 0.97)
    bob = candidate(cdp.engine, ("user_id", "u-bob"), ("anonymous_id", "anon-xss"), 0.9)

    signed_out = client.get("/matching", follow_redirects=False)
    assert (signed_out.status_code, signed_out.headers["location"]) == (303, "/login?next=%2Fmatching")
    analyst = as_role("analyst")
    page = analyst.get("/matching")
    assert page.status_code == 200
    assert 'href="/matching" class="active"' in page.text
    assert re.search(r'data-count="pending">2<', page.text)
    assert "1,234 profiles compared · 7 merged · 3 queued for review" in page.text
    assert "date_of_birth 99" in page.text and "1 refused by merge protection" in page.text
    assert f'data-candidate="{anna}"' in page.text  # the most probable first
    assert 'data-field="trait:first_name" data-state="differs"' in page.text
    assert 'data-field="trait:email" data-state="right_only"' in page.text
    assert 'class="state-activity" data-field="activity:events"' in page.text  # shown, not highlighted
    assert "name similar (JW 0.94), same postcode" in page.text
    assert f'id="pair-next" href="/matching?at={bob}"' in page.text
    assert "decide-accept" not in page.text and "can look at the queue but not decide" in page.text
    token = csrf_token(analyst, "/matching")
    assert _decide(analyst, anna, "accept", token).status_code == 403
    xss = analyst.get(f"/matching?at={bob}").text
    assert "<img src=x" not in xss and "&lt;img src=x onerror=alert(1)&gt;" in xss

    marketer = as_role("marketer")
    page = marketer.get("/matching").text
    for key, decision in (("a", "accept"), ("r", "reject"), ("s", "skip")):
        assert f'id="decide-{decision}"' in page and f"<kbd>{key}</kbd> {decision}" in page
    assert _decide(marketer, anna, "accept", "not the token").status_code == 403  # CSRF
    token = csrf_token(marketer, "/matching")
    accepted = _decide(marketer, anna, "accept", token)
    assert accepted.status_code == 303
    assert accepted.headers["location"] == f"/matching?done=accept&decided={anna}&at={bob}"
    shown = marketer.get(accepted.headers["location"]).text
    assert f"Pair {anna} accepted: the two profiles merge within seconds." in shown
    assert f'data-candidate="{bob}"' in shown
    deadline = time.monotonic() + 20
    while profile_of(cdp.engine, "anonymous_id", "anon-1") != profile_of(cdp.engine, "user_id", "u-anna"):
        assert time.monotonic() < deadline, "the accepted pair was not merged"
        time.sleep(0.05)

    again = _decide(marketer, anna, "reject", token)
    assert again.status_code == 409
    assert f"candidate {anna} is already decided: accepted by user:" in again.text
    assert _decide(marketer, bob, "merge", token).status_code == 400
    assert _decide(marketer, 424242, "skip", token).status_code == 404
    assert marketer.get("/matching?at=424242").status_code == 404
    rejected = _decide(marketer, bob, "reject", token)
    assert rejected.headers["location"] == f"/matching?done=reject&decided={bob}"
    empty = marketer.get("/matching").text
    assert "Nothing waits for review." in empty and re.search(r'data-count="rejected">1<', empty)
    user = {r["actor"] for r in audit.entries(cdp.engine, action="match.review")}
    assert len(user) == 1 and user.pop().startswith("user:")
    viewed = audit.entries(cdp.engine, action="match.candidate")
    assert viewed and all(e["target_type"] == "match_candidate" for e in viewed)


def test_a_pair_already_one_profile_can_only_be_dismissed(
    client: TestClient, cdp: OpenCDP, as_role: Callable[[str], TestClient]
) -> None:
    people(cdp.engine)
    dora = candidate(cdp.engine, ("user_id", "u-dora"), ("anonymous_id", "anon-dora"), 0.9)
    odd = candidate(cdp.engine, ("user_id", "u-bob"), ("user_id", "u-anna"), 0.5,
                    comparisons=[{"field": None, "bayes_factor": "big"}, "odd"])  # fmt: skip
    admin = as_role("admin")
    shown = admin.get(f"/matching?at={odd}")  # whatever a run stored in its comparisons
    assert shown.status_code == 200 and "odd" in shown.text and "big" in shown.text
    page = admin.get("/matching").text
    assert 'id="pair-same"' in page and 'id="decide-dismiss"' in page and 'id="decide-accept"' not in page
    token = csrf_token(admin, "/matching")
    assert _decide(admin, dora, "dismiss", token).status_code == 303
    with cdp.engine.connect() as conn:
        status = conn.execute(sa.select(match_candidates.c.status).where(match_candidates.c.id == dora))
        assert status.scalar_one() == "merged"


# --- In a real browser, with the keyboard --------------------------------------------------------


def _two_customers(dashboard: Dashboard) -> list[tuple[Identifier, Identifier]]:
    """Pairs of user ids of demo customers whose profiles are apart and can merge (each profile has
    one user id, so each pair joins a customer's user id with another profile's anonymous id)."""
    with dashboard.engine.connect() as conn:
        rows = conn.execute(
            sa.select(identities.c.type, identities.c.value, identities.c.profile_id)
            .join(profiles, profiles.c.id == identities.c.profile_id)
            .where(profiles.c.merged_into.is_(None))
            .order_by(identities.c.value)
        ).all()
    users: dict[str, str] = {}
    anonymous_only: list[tuple[str, str]] = []
    kinds: dict[str, set[str]] = {}
    for r in rows:
        kinds.setdefault(r.profile_id, set()).add(r.type)
        if r.type == "user_id":
            users.setdefault(r.profile_id, r.value)
    for r in rows:
        if r.type == "anonymous_id" and kinds[r.profile_id] == {"anonymous_id"}:
            anonymous_only.append((r.profile_id, r.value))
    seen: set[str] = set()
    anonymous = []
    for pid, value in anonymous_only:
        if pid not in seen:
            seen.add(pid)
            anonymous.append(value)
    pairs = list(zip(list(users.values())[:2], anonymous[:2], strict=False))
    assert len(pairs) == 2, "the demo shop has identified customers and anonymous-only visitors"
    return [(Identifier("user_id", u), Identifier("anonymous_id", a)) for u, a in pairs]


def _pid(dashboard: Dashboard, ident: Identifier) -> str:
    with dashboard.engine.connect() as conn:
        pid = conn.execute(
            sa.select(identities.c.profile_id).where(
                identities.c.type == ident.type, identities.c.value == ident.value
            )
        ).scalar_one()
        merged = conn.execute(sa.select(profiles.c.merged_into).where(profiles.c.id == pid)).scalar()
    return str(merged or pid)


@pytest.mark.server
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"browser tests need Debian's Chromium at {CHROMIUM}")
def test_review_with_the_keyboard(page: Any, dashboard: Dashboard) -> None:
    from playwright.sync_api import expect

    (first_user, first_anon), (second_user, second_anon) = _two_customers(dashboard)
    now = datetime.now(UTC)
    ids = []
    with dashboard.engine.begin() as conn:
        conn.execute(match_candidates.delete().where(match_candidates.c.model == "browser"))
        for (left, right), p in (((first_anon, first_user), 0.99), ((second_anon, second_user), 0.98)):
            a, b = sorted((left, right))
            ids.append(conn.execute(match_candidates.insert().values(
                model="browser", left_type=a.type, left_value=a.value, right_type=b.type,
                right_value=b.value, probability=p, match_weight=9.1,
                comparisons=[{"field": "name", "label": "similar", "level": 2, "bayes_factor": 80.0}],
                explanation=f"name similar (JW 0.97): match probability {p}", status="pending", scored_at=now,
            )).inserted_primary_key[0])  # fmt: skip
    sign_in(page, dashboard.url)
    page.get_by_role("link", name="Matching", exact=True).click()
    pair = page.locator("#pair")
    expect(pair).to_have_attribute("data-candidate", str(ids[0]))
    expect(page.locator("#keys")).to_contain_text("a accept")
    expect(page.locator("#pair-fields")).to_be_visible()

    page.keyboard.press("j")  # next pair, then back
    expect(pair).to_have_attribute("data-candidate", str(ids[1]))
    page.keyboard.press("k")
    expect(pair).to_have_attribute("data-candidate", str(ids[0]))

    page.keyboard.press("a")
    expect(page.get_by_role("status")).to_contain_text(f"Pair {ids[0]} accepted")
    expect(pair).to_have_attribute("data-candidate", str(ids[1]))  # the next pair appears
    deadline = time.monotonic() + 30  # the server's processor merges them
    while _pid(dashboard, first_anon) != _pid(dashboard, first_user):
        assert time.monotonic() < deadline, "the accepted pair was not merged"
        time.sleep(0.1)

    page.keyboard.press("r")
    expect(page.get_by_role("status")).to_contain_text(f"Pair {ids[1]} rejected")
    with dashboard.engine.connect() as conn:
        statuses = dict(conn.execute(
            sa.select(match_candidates.c.id, match_candidates.c.status).where(match_candidates.c.id.in_(ids))
        ).all())  # fmt: skip
    assert statuses == {ids[0]: "accepted", ids[1]: "rejected"}
    assert _pid(dashboard, second_anon) != _pid(dashboard, second_user)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_run_matching_from_the_page(
    client: TestClient, cdp: OpenCDP, as_role: Callable[[str], TestClient]
) -> None:
    from opencdp.match import runner

    analyst = as_role("analyst")
    assert "Run matching now" not in analyst.get("/matching").text
    refused = analyst.post("/matching/run", data={"csrf_token": csrf_token(analyst, "/matching")})
    assert refused.status_code == 403
    marketer = as_role("marketer")
    page = marketer.get("/matching")
    assert "Run matching now" in page.text and "No run yet" in page.text
    token = csrf_token(marketer, "/matching")
    started = marketer.post("/matching/run", data={"csrf_token": token}, follow_redirects=False)
    assert (started.status_code, started.headers["location"]) == (303, "/matching?started=1")
    deadline = time.monotonic() + 60
    while runner.running() and time.monotonic() < deadline:
        time.sleep(0.05)
    shown = marketer.get("/matching?started=1").text
    assert "Matching started" in shown
    assert "at least 20 are needed" in shown  # an empty shop: the run says why it stopped
