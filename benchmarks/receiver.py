"""A fast local webhook receiver for the delivery benchmark, in its own process (uvicorn, raw
ASGI): it answers 200 to every POST and records when each idempotency key (or, for batches, each
member's key) arrived. `GET /stats` returns and forgets what arrived since the last call.

    python benchmarks/receiver.py PORT
"""

from __future__ import annotations

import sys
import time
from typing import Any

import orjson
import uvicorn

arrivals: list[tuple[str, str | None, float]] = []  # (key, event message id or profile id, when)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    now = time.time()
    if scope["method"] == "GET":
        payload = orjson.dumps(arrivals)
        arrivals.clear()
    else:
        data = orjson.loads(body) if body else None
        for item in data if isinstance(data, list) else [data]:
            if isinstance(item, dict):
                event = item.get("event") if isinstance(item.get("event"), dict) else {}
                profile = item.get("profile") if isinstance(item.get("profile"), dict) else {}
                # an event's message id, or (journey sends) the profile id
                arrivals.append(
                    (str(item.get("idempotency_key")), event.get("messageId") or profile.get("id"), now)
                )
        payload = b'{"ok":true}'
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": payload})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
