"""Destinations and dead letters in the dashboard, in-process on SQLite and PostgreSQL: create with
errors named by field, the secret never shown, a test message to a real local receiver, edit,
enable/disable, forwarding rules, audience syncs, delete, replay; read-only roles and forged
forms change nothing; every change is in the audit log."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from opencdp.activation import outbox
from opencdp.activation.destinations import DestinationSpec, create
from opencdp.activation.drivers import driver_class
from opencdp.segments import store
from opencdp.store.schema import audit_log, deliveries, destinations
from opencdp.system import OpenCDP
from opencdp.ui.views_destinations import EXAMPLES
from tests.receivers import Receiver, verify_signature
from tests.ui.conftest import csrf_token

SECRET = "a signing key nobody may read back"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def _form(client: TestClient, **fields: str) -> dict[str, str]:
    base = {
        "name": "Shop hook",
        "kind": "webhook",
        "config": "{}",
        "secret": "",
        "purpose": "",
        "rate_per_second": "",
        "max_retry_seconds": "86400",
        "enabled": "1",
    }
    return {**base, **fields, "csrf_token": csrf_token(client, "/destinations")}


def _actions(cdp: OpenCDP) -> list[tuple[str, str, str | None]]:
    with cdp.engine.connect() as conn:
        return [
            (r.actor, r.action, r.target_id)
            for r in conn.execute(sa.select(audit_log).order_by(audit_log.c.id))
            if r.action.split(".")[0] in ("destination", "forwarding", "audience", "deliveries")
        ]


def _hook(
    cdp: OpenCDP, name: str = "hook", url: str = "http://127.0.0.1:9/hook", enabled: bool = True
) -> int:
    with cdp.engine.begin() as conn:
        spec = DestinationSpec(name=name, kind="webhook", config={"url": url}, enabled=enabled)
        return create(conn, cdp.settings, spec)


def test_every_example_is_a_valid_configuration() -> None:
    for kind, example in EXAMPLES.items():
        assert driver_class(kind).validate(dict(example)), kind


def test_create_test_edit_forward_sync_and_delete(
    client: TestClient, cdp: OpenCDP, as_role: Callable[[str], TestClient], receiver: Receiver
) -> None:
    as_role("marketer")
    listing = client.get("/destinations")
    assert listing.status_code == 200 and "No destinations yet." in listing.text
    assert 'href="/destinations" class="active"' in listing.text
    new = client.get("/destinations/new").text
    for kind in ("webhook", "smtp", "nats", "rabbitmq", "file"):
        assert f'<option value="{kind}"' in new and f'id="example-{kind}"' in new
    assert '<option value="email_marketing"' in new and 'type="password" name="secret"' in new

    # errors are named by field, shown next to it, and what was typed stays (but not the secret)
    typed = '{"url": "ftp://nowhere", "timeout_seconds": 5}'
    bad = client.post("/destinations", data=_form(client, name="Typed name", config=typed, secret=SECRET))
    assert bad.status_code == 400
    assert re.search(r'id="error-config"><code>config.url</code>: give an http', bad.text)
    assert 'aria-invalid="true" aria-describedby="error-config"' in bad.text
    assert 'value="Typed name"' in bad.text and "ftp://nowhere" in bad.text and SECRET not in bad.text
    unreadable = client.post("/destinations", data=_form(client, config="{not json"))
    assert unreadable.status_code == 400 and "not valid JSON" in unreadable.text
    for field, value, expected in (
        ("rate_per_second", "fast", "error-rate_per_second"),
        ("rate_per_second", "0", "error-rate_per_second"),
        ("max_retry_seconds", "5", "error-max_retry_seconds"),
        ("purpose", "telepathy", "error-purpose"),
        ("name", " ", "error-name"),
        ("kind", "pigeon", "error-kind"),
    ):
        fine = '{"url": "http://127.0.0.1:9/x"}'
        response = client.post("/destinations", data=_form(client, **{"config": fine, field: value}))
        assert response.status_code == 400 and f'id="{expected}"' in response.text, (field, value)
    assert client.get("/destinations").text.count("/destinations/new") == 2  # still none saved

    config = json.dumps({"url": receiver.url})
    saved = client.post(
        "/destinations",
        data=_form(client, config=config, secret=SECRET, purpose="email_marketing", rate_per_second="2.5"),
        follow_redirects=False,
    )
    assert saved.status_code == 303, saved.text
    found = re.fullmatch(r"/destinations/(\d+)\?done=saved", saved.headers["location"])
    assert found
    dest = int(found.group(1))
    page = client.get(saved.headers["location"]).text
    assert "Destination saved." in page and "set (encrypted, not shown)" in page and SECRET not in page
    assert "email_marketing" in page and "2.5 per second" in page and receiver.url in page
    duplicate = client.post("/destinations", data=_form(client, config=config))
    assert duplicate.status_code == 409 and 'id="error-name"' in duplicate.text
    listing = client.get("/destinations").text
    assert f'href="/destinations/{dest}">Shop hook</a>' in listing and "closed" in listing

    tested = client.post(f"/destinations/{dest}/test", data={"csrf_token": csrf_token(client)})
    assert tested.status_code == 200
    assert re.search(r'id="test-outcome">\s*Test message: <strong>delivered</strong>', tested.text)
    assert len(receiver.received) == 1 and verify_signature(SECRET, receiver.received[0])
    receiver.status = 500
    failed = client.post(f"/destinations/{dest}/test", data={"csrf_token": csrf_token(client)})
    assert "<strong>retry</strong>: HTTP 500" in failed.text
    receiver.status = 200

    edit = client.get(f"/destinations/{dest}/edit").text
    assert SECRET not in edit and 'name="secret" id="destination-secret" value=""' in edit
    assert "leave empty to keep the saved secret" in edit
    assert 'id="destination-kind" disabled' in edit  # a kind cannot change
    with cdp.engine.connect() as conn:
        sealed = conn.execute(sa.select(destinations.c.secret).where(destinations.c.id == dest)).scalar()
    changed = json.dumps({"url": receiver.url, "timeout_seconds": 3})
    wrong = client.post(
        f"/destinations/{dest}",
        data={**_form(client, config='{"url": 1}'), "max_retry_seconds": "86400"},
    )
    assert (
        wrong.status_code == 400
        and "<code>config.url</code>" in wrong.text
        and "Edit destination" in wrong.text
    )
    updated = client.post(
        f"/destinations/{dest}",
        data=_form(client, name="Shop hook 2", config=changed),
        follow_redirects=False,
    )
    assert updated.status_code == 303
    with cdp.engine.connect() as conn:
        row = conn.execute(sa.select(destinations).where(destinations.c.id == dest)).one()
    assert row.name == "Shop hook 2" and row.config["timeout_seconds"] == 3
    assert row.secret == sealed and row.purpose is None and row.rate_per_second is None  # secret kept

    off = client.post(
        f"/destinations/{dest}/disable", data={"csrf_token": csrf_token(client)}, follow_redirects=False
    )
    assert off.status_code == 303 and "Destination disabled" in client.get(off.headers["location"]).text
    assert ">disabled</span>" in client.get("/destinations").text
    client.post(f"/destinations/{dest}/enable", data={"csrf_token": csrf_token(client)})

    rule_page = f"/destinations/{dest}"
    bad_rule = client.post(
        f"{rule_page}/rules",
        data={"name": "Orders", "filter": '{"types": ["purchase"]}', "csrf_token": csrf_token(client)},
    )
    assert bad_rule.status_code == 400 and "<code>filter.types.0</code>" in bad_rule.text
    assert 'value="Orders"' in bad_rule.text and "purchase" in bad_rule.text
    rule = client.post(
        f"{rule_page}/rules",
        data={
            "name": "Orders",
            "filter": '{"events": ["Order Completed"]}',
            "csrf_token": csrf_token(client),
        },
        follow_redirects=False,
    )
    assert rule.status_code == 303
    shown = client.get(rule_page).text
    assert "Orders" in shown and "Order Completed" in shown
    rule_id = int(re.findall(rf"/destinations/{dest}/rules/(\d+)/delete", shown)[0])

    store.save(cdp.engine, "Everyone", {"trait": "email", "op": "exists"})
    assert '<option value="Everyone">' in client.get(rule_page).text
    synced = client.post(
        f"{rule_page}/syncs",
        data={"segment": "Everyone", "csrf_token": csrf_token(client)},
        follow_redirects=False,
    )
    assert synced.status_code == 303 and synced.headers["location"].endswith("?done=sync_added#syncs")
    shown = client.get(synced.headers["location"]).text
    assert "Audience sync started" in shown and "<td>Everyone</td>" in shown
    assert '<option value="Everyone">' not in shown  # offered once
    again = client.post(f"{rule_page}/syncs", data={"segment": "Nobody", "csrf_token": csrf_token(client)})
    assert again.status_code == 400 and "no segment named" in again.text
    sync_id = int(re.findall(rf"/destinations/{dest}/syncs/(\d+)/delete", shown)[0])
    for path in (f"{rule_page}/rules/{rule_id}/delete", f"{rule_page}/syncs/{sync_id}/delete"):
        gone = client.post(path, data={"csrf_token": csrf_token(client)}, follow_redirects=False)
        assert gone.status_code == 303, path
    shown = client.get(rule_page).text
    assert "No events are forwarded here." in shown and "No segments are synced here." in shown

    deleted = client.post(
        f"/destinations/{dest}/delete", data={"csrf_token": csrf_token(client)}, follow_redirects=False
    )
    assert deleted.headers["location"] == "/destinations?done=deleted"
    assert client.get(f"/destinations/{dest}").status_code == 404
    marketer = next(actor for actor, *_ in _actions(cdp))
    assert marketer.startswith("user:")
    assert [(action, target) for _, action, target in _actions(cdp)] == [
        ("destination.create", str(dest)),
        ("destination.test", str(dest)),
        ("destination.test", str(dest)),
        ("destination.update", str(dest)),
        ("destination.disable", str(dest)),
        ("destination.enable", str(dest)),
        ("forwarding.create", str(rule_id)),
        ("audience.sync", str(sync_id)),
        ("forwarding.delete", str(rule_id)),
        ("audience.unsync", str(sync_id)),
        ("destination.delete", str(dest)),
    ]


def _dead_letters(cdp: OpenCDP, dest: int, n: int) -> list[int]:
    now = datetime.now(UTC)
    with cdp.engine.begin() as conn:
        outbox.write(
            conn,
            [outbox.decision(dest, f"fwd-test-{dest}-{i}", "event", {"rule": 1}, at=now) for i in range(n)],
        )
        conn.execute(
            deliveries.update()
            .where(deliveries.c.destination_id == dest)
            .values(status=outbox.DEAD, attempts=3, last_error="HTTP 422: <b>refused</b>", finished_at=now)
        )
        return list(
            conn.execute(
                sa.select(deliveries.c.id)
                .where(deliveries.c.destination_id == dest)
                .order_by(deliveries.c.id)
            ).scalars()
        )


def _statuses(cdp: OpenCDP) -> dict[int, str]:
    with cdp.engine.connect() as conn:
        return dict(conn.execute(sa.select(deliveries.c.id, deliveries.c.status)).all())


def test_dead_letters_are_listed_and_replayed(
    client: TestClient, cdp: OpenCDP, as_role: Callable[[str], TestClient]
) -> None:
    # disabled destinations keep their deliveries: replayed ones stay pending for the assertions
    first, second = _hook(cdp, "first", enabled=False), _hook(cdp, "second", enabled=False)
    a1, a2, a3 = _dead_letters(cdp, first, 3)
    (b1,) = _dead_letters(cdp, second, 1)

    as_role("analyst")
    page = client.get("/deliveries")
    assert page.status_code == 200 and "<h1>Dead letters</h1>" in page.text
    shown = re.findall(r'<td class="num">(\d+)</td>\s*<td><a href="/destinations', page.text)
    assert [int(i) for i in shown] == [b1, a3, a2, a1]  # newest first
    assert "HTTP 422: &lt;b&gt;refused&lt;/b&gt;" in page.text and f"fwd-test-{first}-0" in page.text
    assert ">Replay</button>" not in page.text
    token = csrf_token(client)
    refused = client.post("/deliveries/replay", data={"delivery": str(a1), "csrf_token": token})
    assert refused.status_code == 403 and "can look" in refused.text
    assert client.get("/destinations").text.count('<span class="badge bad">4</span>') == 1

    as_role("marketer")
    only_first = client.get(f"/deliveries?destination={first}").text
    assert f"fwd-test-{second}-0" not in only_first and "Replay all 3" in only_first
    assert client.get("/deliveries?status=nonsense").status_code == 400
    assert f"fwd-test-{second}-0" in client.get("/deliveries?status=dead&destination=").text  # every one
    assert client.get("/deliveries?destination=9999").status_code == 404
    assert client.post("/deliveries/replay", data={"delivery": str(a1)}).status_code == 403  # no token
    one = client.post(
        "/deliveries/replay",
        data={"delivery": str(a2), "csrf_token": csrf_token(client)},
        follow_redirects=False,
    )
    assert one.headers["location"] == "/deliveries?replayed=1"
    assert "1 dead letter queued again." in client.get(one.headers["location"]).text
    assert _statuses(cdp) == {a1: "dead", a2: "pending", a3: "dead", b1: "dead"}
    pending = client.get(f"/deliveries?status=pending&destination={first}").text
    assert "<h1>Pending deliveries</h1>" in pending and f"fwd-test-{first}-1" in pending
    assert f"fwd-test-{first}-0" not in pending

    detail = client.get(f"/destinations/{first}").text
    assert (
        "Replay all 2 dead letters" in detail
        and f'href="/deliveries?status=dead&amp;destination={first}"' in detail
    )
    everything = client.post(
        "/deliveries/replay",
        data={"destination": str(first), "back": "destination", "csrf_token": csrf_token(client)},
        follow_redirects=False,
    )
    assert everything.headers["location"] == f"/destinations/{first}?replayed=2"
    assert "2 dead letters queued again." in client.get(everything.headers["location"]).text
    assert _statuses(cdp) == {a1: "pending", a2: "pending", a3: "pending", b1: "dead"}
    assert [(action, target) for _, action, target in _actions(cdp)] == [
        ("deliveries.replay", ""),
        ("deliveries.replay", str(first)),
    ]


def test_read_only_roles_and_forged_forms_change_nothing(
    client: TestClient, cdp: OpenCDP, as_role: Callable[[str], TestClient]
) -> None:
    dest = _hook(cdp)
    store.save(cdp.engine, "Everyone", {"trait": "email", "op": "exists"})
    form = {
        "name": "x",
        "kind": "webhook",
        "config": '{"url": "http://127.0.0.1:9/x"}',
        "max_retry_seconds": "86400",
    }
    posts = [
        ("/destinations", form),
        (f"/destinations/{dest}", form),
        (f"/destinations/{dest}/test", {}),
        (f"/destinations/{dest}/disable", {}),
        (f"/destinations/{dest}/delete", {}),
        (f"/destinations/{dest}/rules", {"name": "all", "filter": "{}"}),
        (f"/destinations/{dest}/syncs", {"segment": "Everyone"}),
        ("/deliveries/replay", {"destination": str(dest)}),
    ]
    as_role("analyst")
    for page in ("/destinations", f"/destinations/{dest}", f"/destinations/{dest}/edit", "/deliveries"):
        shown = client.get(page)
        assert shown.status_code == 200, page
        for control in ("New destination", "Send test message", "Add rule", "Start syncing", "Save changes"):
            assert control not in shown.text, (page, control)
    token = csrf_token(client)
    for path, data in posts:
        response = client.post(path, data={**data, "csrf_token": token})
        assert response.status_code == 403 and "can look" in response.text, path

    as_role("admin")
    token = csrf_token(client)
    for path, data in posts:
        assert client.post(path, data=data).status_code == 403, path
        assert client.post(path, data={**data, "csrf_token": "wrong"}).status_code == 403, path
        cross = client.post(
            path, data={**data, "csrf_token": token}, headers={"Origin": "https://evil.example"}
        )
        assert cross.status_code == 403 and "This form has expired" in cross.text, path
    with cdp.engine.connect() as conn:
        row = conn.execute(sa.select(destinations).where(destinations.c.id == dest)).one()
    assert row.name == "hook" and row.enabled and _actions(cdp) == []
    assert "No events are forwarded here." in client.get(f"/destinations/{dest}").text
