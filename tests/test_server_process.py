"""Through a real `opencdp serve` process: the official Segment and RudderStack client libraries,
unchanged but for host and key, and a crash (SIGKILL) in the middle of a stream of batches."""

from __future__ import annotations

import base64
import os
import signal
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from opencdp.config import Settings
from opencdp.store.database import create_engine
from opencdp.store.schema import events
from tests.serverproc import Server, opencdp

pytestmark = pytest.mark.server


@pytest.fixture
def server_env(env_for: dict[str, str]) -> dict[str, str]:
    opencdp("migrate", env=env_for)
    return env_for


@pytest.fixture
def server(server_env: dict[str, str], tmp_path: Path) -> Iterator[Server]:
    proc = Server(server_env, tmp_path / "server.log").start()
    yield proc
    proc.stop()


def logged_message_ids(settings: Settings) -> list[str]:
    engine = create_engine(settings)
    with engine.connect() as conn:
        ids = [row[0] for row in conn.execute(sa.select(events.c.message_id))]
    engine.dispose()
    return ids


def _send_with(client: object, user: str) -> list[str]:
    """The same calls a shop backend would make; returns the messageIds the library generated."""
    sent = []
    for i in range(30):
        for ok, msg in (
            client.identify(user, {"email": f"{user}@example.com", "plan": "gold"}),  # type: ignore[attr-defined]
            client.track(
                user,
                "Order Completed",
                {
                    "revenue": 10.5 + i,
                    "currency": "EUR",  # type: ignore[attr-defined]
                    "products": [{"sku": "A1", "category": "shoes"}],
                },
            ),
            client.page(user, "Shop", "Product", {"url": f"https://shop.example/p/{i}"}),  # type: ignore[attr-defined]
            client.screen(user, "App", "Cart"),  # type: ignore[attr-defined]
            client.group(user, "acme", {"name": "Acme"}),  # type: ignore[attr-defined]
            client.alias(f"anon-{user}-{i}", user),  # type: ignore[attr-defined]
        ):
            assert ok
            sent.append(msg["messageId"])
    client.flush()  # type: ignore[attr-defined]
    client.shutdown()  # type: ignore[attr-defined]
    return sent


def test_segment_python_client(server: Server, server_env: dict[str, str], settings: Settings) -> None:
    from segment.analytics import Client

    write_key = opencdp("sources", "create", "segment-backend", env=server_env).strip()
    errors: list[Exception] = []
    client = Client(
        write_key,
        host=server.url,
        on_error=lambda e, _b: errors.append(e),
        gzip=True,
        max_retries=2,
        upload_size=50,
    )
    sent = _send_with(client, "seg-user")
    assert not errors
    logged = logged_message_ids(settings)
    assert sorted(logged) == sorted(sent)  # every event, exactly once


def test_rudderstack_python_client(server: Server, server_env: dict[str, str], settings: Settings) -> None:
    from rudderstack.analytics import Client

    write_key = opencdp("sources", "create", "rudder-backend", env=server_env).strip()
    errors: list[Exception] = []
    client = Client(
        write_key,
        host=server.url,
        on_error=lambda e, _b: errors.append(e),
        gzip=True,
        max_retries=2,
        upload_size=40,
    )
    sent = _send_with(client, "rudder-user")
    assert not errors
    assert sorted(logged_message_ids(settings)) == sorted(sent)


def test_sigkill_loses_no_acknowledged_batch(
    server_env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    write_key = opencdp("sources", "create", "stream", env=server_env).strip()
    auth = {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}
    server = Server(server_env, tmp_path / "server.log").start()
    acknowledged: list[list[str]] = []
    unanswered: list[list[str]] = []
    stop = threading.Event()

    def stream() -> None:
        with httpx.Client(base_url=server.url, headers=auth, timeout=5) as http:
            while not stop.is_set():
                ids = [str(uuid.uuid4()) for _ in range(50)]
                batch = {
                    "batch": [
                        {
                            "type": "track",
                            "anonymousId": "a",
                            "event": "Tick",
                            "messageId": m,
                            "properties": {"n": n},
                        }
                        for n, m in enumerate(ids)
                    ]
                }
                try:
                    response = http.post("/v1/batch", json=batch)
                except httpx.HTTPError:
                    unanswered.append(ids)
                    return
                (acknowledged if response.status_code == 200 else unanswered).append(ids)

    senders = [threading.Thread(target=stream) for _ in range(3)]
    for thread in senders:
        thread.start()
    while len(acknowledged) < 40:
        threading.Event().wait(0.01)
    server.kill()
    stop.set()
    for thread in senders:
        thread.join(10)

    server = Server(server_env, tmp_path / "server2.log").start()  # restart on the same database
    try:
        logged = logged_message_ids(settings)
        assert len(logged) == len(set(logged)), "an event is in the log twice"
        for ids in acknowledged:
            assert set(ids) <= set(logged), "an acknowledged batch was lost"
        for ids in unanswered:  # a batch is all-or-nothing even when the crash cut it off
            assert set(ids) <= set(logged) or not set(ids) & set(logged)
        # A retry of everything after restart adds nothing that is already there.
        with httpx.Client(base_url=server.url, headers=auth, timeout=10) as http:
            for ids in acknowledged[:5]:
                batch = {
                    "batch": [
                        {"type": "track", "anonymousId": "a", "event": "Tick", "messageId": m} for m in ids
                    ]
                }
                assert http.post("/v1/batch", json=batch).status_code == 200
        assert len(logged_message_ids(settings)) == len(logged)
    finally:
        server.stop()


def _processor_children(pid: int) -> list[int]:
    """The server's processor child processes (not multiprocessing's resource tracker)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"spawn_main" in cmdline:
                found.append(int(child))
    return found


def test_a_killed_processor_is_restarted_and_collection_never_waits_for_it(
    server: Server, server_env: dict[str, str], settings: Settings
) -> None:
    """`serve` runs the processor as a child process: killing it (SIGKILL, as the OOM killer
    would) neither blocks collection (the wake-up signal holds no lock) nor stops processing."""
    from tests.load import wait_until_processed

    write_key = opencdp("sources", "create", "shop", env=server_env).strip()
    auth = {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}

    def send(user: str) -> None:
        body = {"batch": [{"type": "identify", "userId": user, "traits": {"email": f"{user}@example.org"}}]}
        assert httpx.post(server.url + "/v1/batch", json=body, headers=auth, timeout=10).is_success

    assert server.proc is not None
    send("before")
    (child,) = _processor_children(server.proc.pid)
    os.kill(child, signal.SIGKILL)
    for i in range(20):  # acknowledged at once, while no processor runs
        send(f"while-{i}")
    engine = create_engine(settings)
    try:
        wait_until_processed(engine, seconds=60)
        with engine.connect() as conn:
            processed = conn.execute(sa.text("select count(*) from profiles")).scalar_one()
    finally:
        engine.dispose()
    assert processed == 21
    assert _processor_children(server.proc.pid) not in ([], [child])
    assert "processor process exited; restarting" in server.log_path.read_text()
