"""Regression tests for reliability defects: events that were acknowledged but never processed, and
erased people who came back (through a stale cache, an event in flight, an import)."""

from __future__ import annotations

import base64
import random
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from opencdp.access.keys import create_api_key, create_source
from opencdp.api.app import create_app
from opencdp.collect.messages import Envelope, Limits, normalise
from opencdp.config import Settings
from opencdp.imports import parse_mapping, run_import
from opencdp.log.append import LogAppender
from opencdp.privacy import erasure
from opencdp.privacy.erasure import erase_person
from opencdp.process.processor import PROCESSOR, Processor, reset_derived_state
from opencdp.store.schema import event_owners, events, metadata, processor_state
from opencdp.system import OpenCDP
from tests.identity_helpers import RULES, log_messages, process, profile_of, source_id

PERSON = ("user-erase-77", "erase.me@example.org", "device-erase-77")


def _rows(engine: sa.Engine, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    sid = source_id(engine)
    return [normalise(dict(m), Envelope(datetime.now(UTC)), sid, Limits()) for m in messages]


def _unprocessed(engine: sa.Engine) -> int:
    """Events in the log that no processor ever applied (no owner) — must be 0 after processing."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(events)
                .where(~events.c.id.in_(sa.select(event_owners.c.event_id)))
            ).scalar_one()
        )


def _whole_database(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        return "\n".join(
            str(row) for table in metadata.sorted_tables for row in conn.execute(sa.select(table))
        ).lower()


def _person_events() -> list[dict[str, Any]]:
    user, email, device = PERSON
    return [
        {"type": "page", "anonymousId": device, "name": "Home"},
        {"type": "identify", "anonymousId": device, "userId": user, "traits": {"email": email}},
        {"type": "track", "userId": user, "event": "Order Completed", "properties": {"revenue": 5}},
    ]


def test_event_ids_are_never_reused_after_an_erasure(cdp: OpenCDP) -> None:
    """Erasing the person who sent the newest events must not hand their ids out again (SQLite
    without AUTOINCREMENT did): the next events would sit below the checkpoint, never processed."""
    log_messages(cdp.engine, [{"type": "identify", "userId": "first", "traits": {"plan": "a"}}])
    log_messages(cdp.engine, _person_events())
    process(cdp.engine)
    erase_person(cdp.engine, RULES, "user_id", PERSON[0], "test")
    log_messages(cdp.engine, [{"type": "identify", "userId": "after", "traits": {"plan": "b"}}])
    process(cdp.engine)
    assert profile_of(cdp.engine, "user_id", "after")
    assert _unprocessed(cdp.engine) == 0
    with cdp.engine.connect() as conn:
        newest = conn.execute(sa.select(sa.func.max(events.c.id))).scalar_one()
        checkpoint = conn.execute(
            sa.select(processor_state.c.last_event_id).where(processor_state.c.name == PROCESSOR)
        ).scalar_one()
    assert newest == checkpoint and newest > 4


def test_an_append_that_commits_late_is_not_passed_over(settings: Settings, cdp: OpenCDP) -> None:
    """Two concurrent writers: the one that took its ids first commits last. The processor must not
    move its checkpoint past ids that can still commit."""
    if cdp.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: ids always commit in order")
    cdp.stop()
    appender = LogAppender.for_engine(cdp.engine, RULES)
    early = _rows(cdp.engine, [{"type": "identify", "userId": "early", "traits": {"n": 1}}])
    late = _rows(cdp.engine, [{"type": "identify", "userId": "late", "traits": {"n": 2}}])
    release = threading.Event()
    in_transaction = threading.Event()

    def slow_writer() -> None:
        with cdp.engine.begin() as conn:
            appender.append(conn, early)
            in_transaction.set()
            release.wait(20)

    first = threading.Thread(target=slow_writer)
    first.start()
    assert in_transaction.wait(10)
    second = threading.Thread(target=appender.append_committed, args=(cdp.engine, late))
    second.start()
    second.join(1.0)  # with appends serialised it waits for the first; without, it commits now
    Processor(cdp.engine, RULES).run_until_caught_up()
    release.set()
    first.join(20)
    second.join(20)
    Processor(cdp.engine, RULES).run_until_caught_up()
    assert _unprocessed(cdp.engine) == 0
    assert profile_of(cdp.engine, "user_id", "early") and profile_of(cdp.engine, "user_id", "late")


def test_a_server_with_a_stale_suppression_cache_stores_nothing_of_an_erased_person(
    cdp: OpenCDP, settings: Settings
) -> None:
    """The erasure runs elsewhere (the CLI, another server); this server's cache is seconds old."""
    write_key = create_source(cdp.engine, "web")[1]
    log_messages(cdp.engine, _person_events())
    process(cdp.engine)
    other = OpenCDP(settings, process=False)
    other.start()
    try:
        with TestClient(create_app(other)) as api:
            auth = {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}
            assert (
                api.post("/v1/track", json={"userId": "warm", "event": "Up"}, headers=auth).status_code == 200
            )
            assert not other.suppressor.current()  # cached: empty, for the next 5 seconds
            erase_person(cdp.engine, RULES, "user_id", PERSON[0], "cli")
            assert not other.suppressor.current()  # still the stale copy
            for message in (
                {"type": "track", "userId": PERSON[0], "event": "Came Back"},
                {"type": "page", "anonymousId": PERSON[2], "name": "Home"},
                {"type": "identify", "anonymousId": "new-device", "traits": {"email": PERSON[1].upper()}},
            ):
                assert api.post(f"/v1/{message['type']}", json=message, headers=auth).status_code == 200
            # and rows validated before the erasure, committed after it (in flight in the writer)
            other.writer.submit(
                _rows(cdp.engine, [{"type": "track", "userId": PERSON[0], "event": "X"}]), 0
            ).result(10)
    finally:
        other.stop()
        other.engine.dispose()
    process(cdp.engine)
    text = _whole_database(cdp.engine)
    assert not any(value.lower() in text for value in PERSON)
    assert "warm" in text


def test_events_arriving_during_an_erasure_are_erased_with_their_new_identifiers(
    cdp: OpenCDP, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events committed after the processor caught up and before the erasure took its locks are not
    processed yet: the person's ones go, with the device they bring, and rebuild brings nothing back."""
    cdp.stop()
    log_messages(cdp.engine, _person_events())
    process(cdp.engine)
    log_messages(
        cdp.engine,
        [
            {
                "type": "identify",
                "userId": PERSON[0],
                "anonymousId": "phone-erase-77",
                "traits": {"city": "Zyx"},
            },
            {"type": "page", "anonymousId": "phone-erase-77", "name": "Cart"},
            {"type": "identify", "userId": "bystander", "traits": {"note": f"friend of {PERSON[1]}"}},
        ],
    )
    # the window: events in the log that the processor has not applied when the erasure starts
    monkeypatch.setattr(erasure.Processor, "run_through", lambda self, event_id: None)
    counts = erase_person(cdp.engine, RULES, "email", PERSON[1], "test")
    assert counts["events_deleted"] == 5 and counts["events_scrubbed"] == 1
    process(cdp.engine)
    for check in range(2):
        text = _whole_database(cdp.engine)
        assert not any(v in text for v in (*PERSON, "phone-erase-77", "zyx")), check
        assert "bystander" in text
        reset_derived_state(cdp.engine)  # rebuild: nothing comes back
        process(cdp.engine)
    # the phone is suppressed too: its next page view is dropped
    LogAppender.for_engine(cdp.engine, RULES).append_committed(
        cdp.engine, _rows(cdp.engine, [{"type": "page", "anonymousId": "phone-erase-77", "name": "Again"}])
    )
    assert "phone-erase-77" not in _whole_database(cdp.engine)


def test_imports_honour_the_suppression_list(cdp: OpenCDP, tmp_path: Path) -> None:
    log_messages(cdp.engine, _person_events())
    process(cdp.engine)
    erase_person(cdp.engine, RULES, "user_id", PERSON[0], "test")
    data = tmp_path / "crm.csv"
    data.write_text(f"crm_id,email,name\nC1,{PERSON[1]},Erased\nC2,kept@example.org,Kept\n")
    mapping = {
        "kind": "contacts",
        "key": "crm_id",
        "columns": {"crm_id": {"identifier": "crm_id"}, "email": {"identifier": "email"}, "name": "string"},
    }
    summary = run_import(
        cdp.engine, data, "crm", parse_mapping(mapping), progress=False, echo=lambda _t: None
    )
    assert (summary.accepted, summary.events_written, summary.suppressed, summary.duplicates) == (2, 1, 1, 0)
    with TestClient(create_app(cdp)) as api:
        admin = {"Authorization": "Bearer " + create_api_key(cdp.engine, "admin")[1]}
        rows = [{"crm_id": "C9", "email": PERSON[1].upper(), "name": "Again"}]
        result = api.post(
            "/api/imports", json={"source": "crm2", "mapping": mapping, "rows": rows}, headers=admin
        )
    assert result.status_code == 200, result.text
    assert (result.json()["suppressed"], result.json()["events_written"]) == (1, 0)
    process(cdp.engine)
    text = _whole_database(cdp.engine)
    assert PERSON[1] not in text and "kept@example.org" in text


def test_sqlite_files_hold_no_erased_value(cdp: OpenCDP, settings: Settings) -> None:
    """Not only the tables: the database file, its free pages and the WAL."""
    if cdp.engine.dialect.name != "sqlite":
        pytest.skip("a file-level check of the embedded database")
    log_messages(cdp.engine, _person_events())
    filler = [
        {"type": "track", "userId": f"other-{i}", "event": "Viewed", "properties": {"i": i}}
        for i in range(300)
    ]
    log_messages(cdp.engine, filler)
    process(cdp.engine)
    path = Path(settings.database_url.removeprefix("sqlite:///"))
    erase_person(cdp.engine, RULES, "user_id", PERSON[0], "test")
    cdp.stop()
    files = [path, path.with_name(path.name + "-wal")]
    content = b"".join(f.read_bytes() for f in files if f.exists())
    for value in PERSON:
        assert value.encode() not in content, value
    assert b"other-299" in content


def test_a_checkpoint_an_erasure_could_not_finish_is_owed_until_a_processor_finishes_it(
    tmp_path: Path,
) -> None:
    """Under load an erasure's checkpoint may not complete (a reader stays inside the WAL): the
    old copies stay in the WAL until a caught-up processor empties it."""
    from opencdp.store.database import open_database
    from opencdp.store.dialect import purge_deleted_content, retry_pending_purge

    engine = open_database(Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'owed.db'}"))
    log_messages(engine, [{"type": "identify", "userId": "owed", "traits": {"n": 1}}])
    wal = tmp_path / "owed.db-wal"
    reader = engine.connect()
    reader.exec_driver_sql("BEGIN")
    reader.exec_driver_sql("SELECT count(*) FROM events").one()  # a snapshot inside the WAL
    log_messages(engine, [{"type": "identify", "userId": "later", "traits": {"n": 2}}])
    try:
        assert purge_deleted_content(engine, seconds=0.2) is False
        assert retry_pending_purge(engine, seconds=0.2) is False  # still owed while the reader stays
    finally:
        reader.rollback()
        reader.close()
    assert retry_pending_purge(engine) is True
    assert not wal.exists() or wal.stat().st_size == 0
    assert retry_pending_purge(engine) is None  # nothing owed any more
    engine.dispose()


def test_the_purge_leaves_no_copy_a_page_rebuild_left_behind(tmp_path: Path) -> None:
    """SQLite's secure_delete zeroes deleted cells, but a b-tree balance that moved a row earlier
    can leave a copy in the unused middle of the page it rebuilt; the purge after an erasure must
    remove those too (it rewrites the database)."""
    from opencdp.store.database import open_database
    from opencdp.store.dialect import purge_deleted_content

    path = tmp_path / "ghosts.db"
    engine = open_database(Settings(data_dir=tmp_path, database_url=f"sqlite:///{path}"))
    rng = random.Random(1)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE scratch (id INTEGER PRIMARY KEY, u TEXT, payload TEXT)")
        for _ in range(10_000):  # random keys: pages split and are rebuilt all the time
            u = PERSON[0] if rng.random() < 0.05 else f"user-{rng.randrange(10**6)}"
            conn.exec_driver_sql(
                "INSERT INTO scratch VALUES (?, ?, ?)",
                (rng.randrange(10**9), u, "x" * rng.randrange(50, 400) + u),
            )
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM scratch WHERE u = ?", (PERSON[0],))
    assert purge_deleted_content(engine)
    engine.dispose()
    content = b"".join(f.read_bytes() for f in (path, path.with_name(path.name + "-wal")) if f.exists())
    assert PERSON[0].encode() not in content
    assert b"user-" in content
