"""Admission control of the customer face (accounts/admission.py): a bounded number of sign-in
requests at work, a bounded queue, 503 + Retry-After beyond it, and nothing else held back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from opencdp.accounts.admission import CustomerFaceAdmission, paused


def _app(release: asyncio.Event, started: list[str]) -> Callable[..., object]:
    async def slow(request: Request) -> PlainTextResponse:
        started.append(request.url.path)
        await release.wait()
        return PlainTextResponse("done")

    async def pausing(request: Request) -> PlainTextResponse:
        started.append(request.url.path)
        async with paused(request.scope):
            await release.wait()
        return PlainTextResponse("done")

    return Starlette(
        routes=[
            Route("/accounts/login", slow, methods=["GET", "POST"]),
            Route("/accounts/token", slow, methods=["POST"]),
            Route("/accounts/mail", pausing),
            Route("/v1/batch", slow, methods=["POST"]),
        ]
    )


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def _client(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shop.test")  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_beyond_the_queue_customers_get_503_and_everything_else_goes_on() -> None:
    release, started = asyncio.Event(), []
    app = CustomerFaceAdmission(_app(release, started), concurrency=1, queue=1)
    async with _client(app) as client:
        working = asyncio.create_task(client.get("/accounts/login"))
        await _settle()
        waiting = asyncio.create_task(client.post("/accounts/login"))
        await _settle()
        assert started == ["/accounts/login"]  # the second waits for a turn
        page = await client.post("/accounts/login")  # the queue is full: shed at once
        assert page.status_code == 503 and page.headers["retry-after"] == "2"
        assert "try again" in page.text and page.headers["content-type"].startswith("text/html")
        token = await client.post("/accounts/token")
        assert token.status_code == 503 and token.json()["error"] == "temporarily_unavailable"
        collector = asyncio.create_task(client.post("/v1/batch"))  # not the customer face
        await _settle()
        assert started == ["/accounts/login", "/v1/batch"]
        release.set()
        answers = await asyncio.gather(working, waiting, collector)
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert started.count("/accounts/login") == 2


@pytest.mark.anyio
async def test_a_request_waits_for_a_turn_no_longer_than_the_limit() -> None:
    release, started = asyncio.Event(), []
    app = CustomerFaceAdmission(_app(release, started), concurrency=1, queue=5, wait_seconds=0.2)
    async with _client(app) as client:
        working = asyncio.create_task(client.get("/accounts/login"))
        await _settle()
        late = await client.get("/accounts/login")
        assert late.status_code == 503
        release.set()
        assert (await working).status_code == 200


@pytest.mark.anyio
async def test_a_request_that_only_waits_gives_its_turn_away() -> None:
    release, started = asyncio.Event(), []
    app = CustomerFaceAdmission(_app(release, started), concurrency=1, queue=0)
    async with _client(app) as client:
        mailing = asyncio.create_task(client.get("/accounts/mail"))
        await _settle()
        signing_in = asyncio.create_task(client.get("/accounts/login"))  # admitted: the turn is free
        await _settle()
        assert started == ["/accounts/mail", "/accounts/login"]
        release.set()
        assert [a.status_code for a in await asyncio.gather(mailing, signing_in)] == [200, 200]
