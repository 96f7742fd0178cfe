"""The write turns on SQLite: a holder keeps every other user out until it is done (in this process
too), a closed user queues again when used again, and the processor loop wakes the delivery loop."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import sqlalchemy as sa

from opencdp.config import Settings
from opencdp.process.loop import ProcessorLoop
from opencdp.store.database import open_database
from opencdp.store.schema import settings_store
from opencdp.store.write_turns import WriteTurns
from opencdp.system import OpenCDP
from tests.identity_helpers import log_messages


def test_a_transaction_waits_for_the_turn_another_user_holds(tmp_path: Path) -> None:
    engine = open_database(Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'opencdp.db'}"))
    holder, waiter = WriteTurns(engine), WriteTurns(engine)
    order: list[str] = []
    held = threading.Event()

    def hold() -> None:
        with holder.turn():
            held.set()
            time.sleep(0.3)
            order.append("holder done")

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(5)
    with waiter.transaction() as conn:
        order.append("waiter in")
        conn.execute(settings_store.insert().values(name="k", value="v"))
    thread.join()
    assert order == ["holder done", "waiter in"]
    waiter.close()
    # closed, then used again: it still queues behind a holder
    held.clear()
    order.clear()
    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(5)
    with waiter.turn():
        order.append("waiter in")
    thread.join()
    assert order == ["holder done", "waiter in"]
    with engine.connect() as conn:
        assert (
            conn.execute(sa.select(settings_store.c.value).where(settings_store.c.name == "k")).scalar()
            == "v"
        )
    holder.close()
    waiter.close()
    engine.dispose()


def test_the_processor_loop_wakes_the_delivery_loop_after_work(settings: Settings) -> None:
    system = OpenCDP(settings, process=False, deliver=False)
    woken = threading.Event()
    loop = ProcessorLoop(system.processor, idle_seconds=0.05, refresh_seconds=0, on_progress=woken.set)
    loop.start()
    try:
        assert not woken.wait(0.5)  # nothing to process: nobody is woken
        log_messages(system.engine, [{"type": "track", "userId": "u1", "event": "Live", "messageId": "m1"}])
        assert woken.wait(10)
    finally:
        loop.stop()
        system.engine.dispose()
