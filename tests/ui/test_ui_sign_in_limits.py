"""Sign-in under attack: guessing is throttled per address and per account, hashing is bounded,
and collection stays fast while sign-ins flood (in-process, both engines)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from argon2.exceptions import VerifyMismatchError
from fastapi import FastAPI
from fastapi.testclient import TestClient

from opencdp.access.throttle import ADDRESS_FAILURES, FailureLog
from opencdp.api.app import create_app
from opencdp.system import OpenCDP
from opencdp.ui import users
from tests.test_collect_api import basic
from tests.ui.conftest import EMAILS, sign_in


@pytest.fixture
def app(cdp: OpenCDP) -> FastAPI:
    return create_app(cdp)


def _client(app: FastAPI, address: str) -> TestClient:
    return TestClient(app, client=(address, 50000))


def test_guessing_from_one_address_is_throttled(app: FastAPI, ui_users: dict[str, users.User]) -> None:
    guesser = _client(app, "198.51.100.1")
    for n in range(ADDRESS_FAILURES):  # a different (unknown) account each time: the address counts
        assert sign_in(guesser, f"nobody{n}@example.com", "guess guess guess").status_code == 400
    blocked = sign_in(guesser, EMAILS["admin"])  # even a right password, for a while
    assert blocked.status_code == 429
    assert 14 * 60 < int(blocked.headers["retry-after"]) <= 15 * 60
    assert "Too many failed sign-ins" in blocked.text and "Try again in 15 minutes" in blocked.text
    assert sign_in(_client(app, "198.51.100.2"), EMAILS["admin"]).status_code == 303  # others are fine


def test_guessing_one_account_from_many_addresses_is_throttled(
    app: FastAPI, ui_users: dict[str, users.User]
) -> None:
    for n in range(5):
        assert (
            sign_in(_client(app, f"203.0.113.{n}"), EMAILS["analyst"], "guess guess guess").status_code == 400
        )
    owner = _client(app, "192.0.2.7")
    assert sign_in(owner, EMAILS["analyst"]).status_code == 429
    assert sign_in(owner, EMAILS["admin"]).status_code == 303  # other accounts are fine


def test_a_successful_sign_in_resets_the_count(app: FastAPI, ui_users: dict[str, users.User]) -> None:
    person = _client(app, "192.0.2.8")
    for _ in range(2):
        for _ in range(4):
            assert sign_in(person, EMAILS["marketer"], "typo typo typo").status_code == 400
        assert sign_in(person, EMAILS["marketer"]).status_code == 303
        person.cookies.clear()


def test_signing_in_to_ones_own_account_does_not_reset_an_addresss_guesses(
    app: FastAPI, ui_users: dict[str, users.User]
) -> None:
    guesser = _client(app, "198.51.100.9")
    for n in range(ADDRESS_FAILURES - 1):
        assert sign_in(guesser, f"victim{n}@example.com", "guess guess guess").status_code == 400
        if n % 4 == 3:  # the guesser's own account, now and then
            assert sign_in(guesser, EMAILS["analyst"]).status_code == 303
            guesser.cookies.clear()
    assert sign_in(guesser, "victim-last@example.com", "guess guess guess").status_code == 400
    assert sign_in(guesser, EMAILS["analyst"]).status_code == 429


def test_failure_log_memory_is_bounded() -> None:
    now = [0.0]
    log = FailureLog(limit=5, window=60, max_keys=100, clock=lambda: now[0])
    for n in range(1000):
        log.failed(f"key{n}")
    log.failed("key999")
    assert len(log) == 100
    for _ in range(50):
        log.failed("busy")
    assert log.retry_after("busy") == 60
    now[0] = 61
    assert log.retry_after("busy") == 0 and log.retry_after("key999") == 0


class CountingHasher:
    """Stands in for argon2: counts how many computations run at once."""

    def __init__(self) -> None:
        self.running = self.most = self.calls = 0
        self._lock = threading.Lock()

    def _work(self) -> None:
        with self._lock:
            self.running += 1
            self.calls += 1
            self.most = max(self.most, self.running)
        time.sleep(0.05)
        with self._lock:
            self.running -= 1

    def hash(self, password: str) -> str:
        self._work()
        return "$argon2id$fake"

    def verify(self, digest: str, password: str) -> bool:
        self._work()
        raise VerifyMismatchError

    def check_needs_rehash(self, digest: str) -> bool:
        return False


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> Iterator[CountingHasher]:
    hasher = CountingHasher()
    monkeypatch.setattr(users, "hasher", lambda: hasher)
    monkeypatch.setattr(users, "_dummy", ["$argon2id$fake"])
    monkeypatch.setattr(users, "gate", users.HashGate(slots=2, queue=4))
    yield hasher


def test_at_most_two_hashes_at_once_and_the_excess_is_refused(
    cdp: OpenCDP, ui_users: dict[str, users.User], counting: CountingHasher
) -> None:
    start = threading.Barrier(20)
    outcomes: list[str] = []

    def attempt(n: int) -> None:
        start.wait()
        email = EMAILS["admin"] if n % 2 else f"nobody{n}@example.com"  # the dummy hash counts too
        try:
            outcomes.append(repr(users.authenticate(cdp.engine, email, "guess guess guess")))
        except users.HasherBusy:
            outcomes.append("busy")

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counting.most == 2
    assert outcomes.count("None") == counting.calls >= 6  # 2 hashing + 4 waiting got their turn
    assert outcomes.count("busy") == 20 - counting.calls


async def _flood(app: FastAPI, write_key: str, sign_ins: int) -> tuple[list[int], list[float]]:
    transport = httpx.ASGITransport(app=app, client=("198.51.100.9", 50000))
    statuses: list[int] = []
    latencies: list[float] = []
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        page = await http.get("/login")
        token = page.text.split('name="csrf_token" value="')[1].split('"')[0]

        async def one_sign_in(n: int) -> None:
            form = {"email": f"nobody{n}@example.com", "password": "guess guess guess", "csrf_token": token}
            statuses.append((await http.post("/login", data=form)).status_code)

        async def collect() -> None:
            await anyio.sleep(0.05)  # while the flood is under way
            for n in range(20):
                started = time.monotonic()
                response = await http.post(
                    "/v1/track", json={"userId": f"u{n}", "event": "E"}, headers=basic(write_key)
                )
                latencies.append(time.monotonic() - started)
                assert response.status_code == 200, response.text

        async with anyio.create_task_group() as group:
            for n in range(sign_ins):
                group.start_soon(one_sign_in, n)
            group.start_soon(collect)
    return statuses, latencies


def test_collection_stays_fast_while_sign_ins_flood(
    app: FastAPI, cdp: OpenCDP, write_key: str, ui_users: dict[str, Any]
) -> None:
    """With the real argon2 hasher: 60 sign-ins at once are answered (wrong password, throttled
    or busy) without 60 x 64 MiB, and each collector request still answers well within a second
    or two (it took 6.5 s before the hasher was bounded)."""
    statuses, latencies = anyio.run(_flood, app, write_key, 60)
    assert len(statuses) == 60 and set(statuses) <= {400, 429, 503}
    assert statuses.count(503) >= 30  # the excess was refused at once, not queued
    assert max(latencies) < 3.0, latencies
