"""The log's intake (SQLite, log/intake.py): what `serve`'s collector commits there reaches the
event log exactly once, in order, never for an erased person, and leaves nothing behind."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from opencdp.collect.messages import Envelope, Limits, normalise
from opencdp.config import Settings
from opencdp.health import processing_lag
from opencdp.log import intake as intake_module
from opencdp.log.intake import Intake, intake_path
from opencdp.privacy.erasure import erase_person
from opencdp.process.processor import Processor
from opencdp.store.database import open_database
from opencdp.store.schema import events
from opencdp.system import OpenCDP
from tests.identity_helpers import RULES, profile_of, source_id


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    engine = open_database(Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'cdp.db'}"))
    yield engine
    engine.dispose()


def _rows(engine: sa.Engine, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    sid = source_id(engine)
    return [normalise(dict(m), Envelope(datetime.now(UTC)), sid, Limits()) for m in messages]


def _identify(user: str, n: int) -> dict[str, Any]:
    return {"type": "identify", "userId": user, "messageId": f"{user}-{n}", "traits": {"n": n}}


def _logged(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(events.c.message_id).order_by(events.c.id)).scalars())


def _intake_for(engine: sa.Engine) -> Intake:
    path = intake_path(engine)
    assert path is not None
    return Intake(path)


def test_moves_every_row_once_in_order_and_empties_the_intake(engine: sa.Engine) -> None:
    intake = _intake_for(engine)
    intake.append(_rows(engine, [_identify("a", 1), _identify("b", 2)]), 0)
    intake.append(_rows(engine, [_identify("a", 1), _identify("c", 3)]), 0)  # a duplicate messageId
    assert _logged(engine) == []
    assert intake.pending() == 4
    processor = Processor(engine, RULES)
    processor.run_until_caught_up()  # moves first, then processes
    assert _logged(engine) == ["a-1", "b-2", "c-3"]
    assert intake.pending() == 0
    assert profile_of(engine, "user_id", "c")
    assert processor.move_intake() == 0


def test_a_crash_between_the_move_and_the_delete_moves_nothing_twice(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    intake = _intake_for(engine)
    # messageIds of their own per row: the log's unique key would hide a second move otherwise
    intake.append(_rows(engine, [{"type": "track", "userId": "u", "event": "E"} for _ in range(3)]), 0)
    monkeypatch.setattr(Intake, "_delete_through", lambda self, upto: None)  # "crashed" after commit
    processor = Processor(engine, RULES)
    assert processor.move_intake() == 3
    assert intake.pending() == 3
    monkeypatch.undo()
    assert Processor(engine, RULES).move_intake() == 0  # the mark says they moved: only deleted now
    assert intake.pending() == 0
    assert len(_logged(engine)) == 3


def test_a_new_intake_file_counts_from_the_start(engine: sa.Engine) -> None:
    path = intake_path(engine)
    assert path is not None
    first = Intake(path)
    first.append(_rows(engine, [_identify(f"u{i}", i) for i in range(5)]), 0)
    assert Processor(engine, RULES).move_intake() == 5
    first.close()
    for suffix in ("", "-wal", "-shm"):
        Path(path + suffix).unlink(missing_ok=True)
    second = Intake(path)  # ids start at 1 again, below the mark of the old file
    second.append(_rows(engine, [_identify("new", 1)]), 0)
    assert Processor(engine, RULES).move_intake() == 1
    assert _logged(engine)[-1] == "new-1"


def test_rows_of_a_person_erased_before_the_move_never_reach_the_log(engine: sa.Engine) -> None:
    """The collector checked them against the list of before the erasure; the move checks again,
    and the intake's file keeps no copy afterwards."""
    processor = Processor(engine, RULES)
    email = "gone.soon@example.org"
    intake = _intake_for(engine)
    intake.append(_rows(engine, [{"type": "identify", "userId": "gone", "traits": {"email": email}}]), 0)
    processor.run_until_caught_up()
    intake.append(
        _rows(engine, [{"type": "track", "userId": "gone", "event": "Late", "properties": {"e": email}}]), 0
    )
    intake.append(_rows(engine, [_identify("stays", 1)]), 0)
    intake.close()
    erase_person(engine, RULES, "user_id", "gone", "test")
    assert _logged(engine) == ["stays-1"]
    processor.run_until_caught_up()
    path = Path(intake_path(engine) or "")
    content = b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())
    assert email.encode() not in content and b"gone" not in content


def test_health_counts_what_waits_in_the_intake(engine: sa.Engine) -> None:
    _intake_for(engine).append(_rows(engine, [_identify("w", 1), _identify("w", 2)]), 0)
    with engine.connect() as conn:
        lag = processing_lag(conn, now=datetime.now(UTC))
    assert lag["events_waiting"] == 2 and lag["lag_seconds"] >= 0
    assert intake_module.backlog(engine)[0] == 2


def test_serve_acknowledges_from_the_intake_and_leaves_it_empty_when_it_stops(tmp_path: Path) -> None:
    """The system as `opencdp serve` runs it: log writer -> intake, the processor child moves."""
    settings = Settings(
        data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'serve.db'}", key_cache_seconds=0
    )
    system = OpenCDP(settings, separate_process=True)
    assert system.intake is not None
    system.start()
    try:
        for batch in range(5):
            rows = _rows(system.engine, [_identify(f"s{batch}-{i}", i) for i in range(40)])
            system.writer.submit(rows, None).result(10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(_logged(system.engine)) < 200:
            time.sleep(0.1)
        assert len(_logged(system.engine)) == 200  # moved by the child while serving
        while time.monotonic() < deadline and system.processor.checkpoint() < 200:
            time.sleep(0.1)
        assert profile_of(system.engine, "user_id", "s4-39")  # and processed
        rows = _rows(system.engine, [_identify("last", 1)])
        system.writer.submit(rows, None).result(10)
    finally:
        system.stop()
    assert _logged(system.engine)[-1] == "last-1" and len(_logged(system.engine)) == 201
    assert intake_module.backlog(system.engine)[0] == 0
    system.engine.dispose()


def test_without_a_processor_child_the_writer_appends_to_the_log(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'embedded.db'}")
    system = OpenCDP(settings, process=False, deliver=False)
    assert system.intake is None
    off = OpenCDP(
        Settings(data_dir=tmp_path, database_url=settings.database_url, intake=False), separate_process=True
    )
    assert off.intake is None
    system.engine.dispose()
    off.engine.dispose()


def test_the_decide_path_sees_a_page_view_in_the_intake_once_before_and_after_the_move(
    engine: sa.Engine,
) -> None:
    from opencdp.personalise.log_tail import LogTail

    tail = LogTail(engine.dialect, window=1000)
    since = datetime(2000, 1, 1, tzinfo=UTC)
    intake = _intake_for(engine)
    page = {"type": "page", "anonymousId": "visitor-1", "name": "Shoes", "properties": {"path": "/shoes"}}
    intake.append(_rows(engine, [page, {**page, "anonymousId": "someone-else"}]), 0)

    def seen() -> list[str | None]:
        with engine.connect() as conn:
            return [e.name for e in tail.events_for(conn, "visitor-1", None, since)]

    assert seen() == ["Shoes"]  # still in the intake
    processor = Processor(engine, RULES)
    processor.move_intake()
    assert seen() == ["Shoes"]  # in the log now, not yet processed: once, not twice
    intake.append(_rows(engine, [{**page, "name": "Boots"}]), 0)
    assert seen() == ["Shoes", "Boots"]
    processor.run_until_caught_up()
    assert seen() == []  # processed: the profile's events answer from here on
