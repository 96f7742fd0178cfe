"""The real brokers the driver tests publish to, and small helpers for those tests.

A broker that does not answer is started with `scripts/brokers` (never installed from a test);
only when that fails are its tests skipped, with the reason. Under CI (CI=true) they fail
instead: there the brokers must run.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from opencdp.activation.drivers.base import Message

ROOT = Path(__file__).resolve().parent.parent


def answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_broker(name: str, host: str, port: int) -> None:
    """Make sure the broker answers at host:port, starting the local one if need be."""
    if answers(host, port):
        return
    problem = f"no {name} server answers at {host}:{port}"
    if host in ("127.0.0.1", "localhost"):
        try:
            started = subprocess.run(
                [str(ROOT / "scripts" / "brokers"), name],
                env={**os.environ, "BROKERS_NO_INSTALL": "1", f"{name.upper()}_PORT": str(port)},
                capture_output=True,
                text=True,
                timeout=120,
            )
            if answers(host, port):
                return
            said = started.stderr.strip() or f"it exited with {started.returncode}, yet nothing answers"
            problem += f" and scripts/brokers could not start one: {said}"
        except (OSError, subprocess.TimeoutExpired) as exc:
            problem += f" and scripts/brokers could not start one: {exc}"
    if os.environ.get("CI"):
        pytest.fail(problem)
    pytest.skip(problem)


def delete_stream(url: str, stream: str) -> None:
    """Remove a test's JetStream stream, if it made one."""
    import nats
    import nats.js.errors

    async def delete() -> None:
        nc = await nats.connect(url)
        try:
            await nc.jetstream().delete_stream(stream)
        except nats.js.errors.NotFoundError:
            pass
        finally:
            await nc.close()

    asyncio.run(delete())


def stream_messages(url: str, stream: str) -> list[tuple[str, dict[str, str], Any]]:
    """Every message in a JetStream stream: subject, headers, JSON body."""
    import nats
    import orjson

    async def read() -> list[tuple[str, dict[str, str], Any]]:
        nc = await nats.connect(url)
        js = nc.jetstream()
        info = await js.stream_info(stream)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(stream, seq)
            out.append((msg.subject or "", dict(msg.headers or {}), orjson.loads(msg.data or b"null")))
        await nc.close()
        return out

    return asyncio.run(read())


def delete_queue(url: Any, queue: str, exchange: str | None = None) -> None:
    """Remove a test's RabbitMQ queue (and exchange)."""
    import aio_pika

    async def delete() -> None:
        connection = await aio_pika.connect(url)
        channel = await connection.channel()
        await channel.queue_delete(queue)
        if exchange is not None:
            await channel.exchange_delete(exchange)
        await connection.close()

    asyncio.run(delete())


def free_port() -> int:
    """A local port nothing listens on (for 'server unreachable')."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def message(n: int, key: str, event: str = "Order Completed", **context: Any) -> Message:
    """A track event message like the outbox makes them."""
    ctx: dict[str, Any] = {
        "kind": "event",
        "event": {"type": "track", "event": event, "properties": {"n": n, "total": 9.5}},
        "profile": {"id": f"p{n}", "traits": {"email": f"u{n}@example.com"}, "computed": {}, "consent": {}},
        "destination": {"id": 1, "name": "test"},
        **context,
    }
    return Message(delivery_id=n, key=key, context=ctx, body={"event": event, "n": n})
