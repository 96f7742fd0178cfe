"""Webhook / generic HTTP: JSON to any URL, one request per message or arrays in batches.

Receivers can check where a request came from and refuse replays: with a secret, each request
carries `X-OpenCDP-Timestamp` (Unix seconds) and `X-OpenCDP-Signature: v1=<hex>`, the
HMAC-SHA256 of `"<timestamp>.<raw body>"` with the secret (docs/activation.md has the recipe).
`Idempotency-Key` is the delivery's key (for a batch, a hash of its members' keys; each member of
the default body carries its own `idempotency_key`).

`url` and `method` may be templates (`"{{ 'DELETE' if action == 'remove' else 'POST' }}"`): a
batch only holds messages whose URL and method render the same. `required` names values a message
must have (`{"email": "{{ profile.traits.email }}"}`): a message where one renders empty is a dead
letter at once, without a request, so one profile without an e-mail cannot fail a whole batch.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import aiohttp
import orjson

from opencdp.activation.drivers.base import DestinationConfigError, Driver, Message, Outcome
from opencdp.activation.templates import TemplateProblem, check, render_text, render_value

METHODS = ("POST", "PUT", "PATCH", "DELETE")
#: client errors that a later attempt may pass: timeout, too early, too many requests
_RETRYABLE_4XX = {408, 425, 429}
MAX_BATCH = 1000


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def signature(secret: str, timestamp: str, body: bytes) -> str:
    return "v1=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class WebhookDriver(Driver):
    kind: ClassVar[str] = "webhook"

    @classmethod
    def validate(cls, config: dict[str, Any]) -> dict[str, Any]:
        known = {
            "url",
            "method",
            "headers",
            "body",
            "batch_size",
            "batch_body",
            "timeout_seconds",
            "concurrency",
            "required",
        }
        for key in config:
            if key not in known:
                raise DestinationConfigError(key, f"unknown setting; known: {', '.join(sorted(known))}")
        url = config.get("url")
        if (
            not isinstance(url, str)
            or urlsplit(url).scheme not in ("http", "https")
            or not urlsplit(url).netloc
        ):
            raise DestinationConfigError("url", "give an http:// or https:// URL")
        check(url)
        method = str(config.get("method", "POST"))
        if "{" in method:
            try:
                check(method)
            except TemplateProblem as exc:
                raise DestinationConfigError("method", str(exc)) from None
        else:
            method = method.upper()
            if method not in METHODS:
                raise DestinationConfigError("method", f"one of {', '.join(METHODS)} (or a template)")
        required = config.get("required", {})
        if not isinstance(required, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in required.items()
        ):
            raise DestinationConfigError("required", "an object of names to templates")
        try:
            check(required)
        except TemplateProblem as exc:
            raise DestinationConfigError("required", str(exc)) from None
        headers = config.get("headers", {})
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise DestinationConfigError("headers", "an object of header names to text (templates allowed)")
        batch_size = config.get("batch_size", 1)
        if (
            not isinstance(batch_size, int)
            or isinstance(batch_size, bool)
            or not 1 <= batch_size <= MAX_BATCH
        ):
            raise DestinationConfigError("batch_size", f"a whole number from 1 (no batching) to {MAX_BATCH}")
        timeout = config.get("timeout_seconds", 10)
        if not isinstance(timeout, int | float) or not 0 < timeout <= 120:
            raise DestinationConfigError("timeout_seconds", "a number of seconds from above 0 to 120")
        concurrency = config.get("concurrency", 8)
        if not isinstance(concurrency, int) or not 1 <= concurrency <= 64:
            raise DestinationConfigError("concurrency", "a whole number from 1 to 64")
        for key in ("body", "batch_body"):
            try:
                check(config.get(key))
            except TemplateProblem as exc:
                raise DestinationConfigError(key, str(exc)) from None
        try:
            check(headers)
        except TemplateProblem as exc:
            raise DestinationConfigError("headers", str(exc)) from None
        return {
            "url": url,
            "method": method,
            "headers": headers,
            "body": config.get("body"),
            "batch_size": batch_size,
            "batch_body": config.get("batch_body"),
            "timeout_seconds": timeout,
            "concurrency": concurrency,
            **({"required": required} if required else {}),
        }

    def batch_size(self) -> int:
        # one request per message: hand the worker enough to keep `concurrency` requests busy
        size = int(self.config["batch_size"])
        return size * int(self.config["concurrency"]) if size > 1 else 50 * int(self.config["concurrency"])

    def _client(self) -> aiohttp.ClientSession:
        """One session per driver (and event loop): keep-alive connections, at most `concurrency`.
        aiohttp rather than httpx here: httpx's async pool served ~7x fewer concurrent requests
        per second to a local receiver (BENCHMARKS.md, deliveries)."""
        client = self.extra.get("client")
        if client is None:
            client = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=int(self.config["concurrency"])),
                timeout=aiohttp.ClientTimeout(total=float(self.config["timeout_seconds"])),
                auto_decompress=True,
            )
            self.extra["client"] = client
        return client

    def _body(self, message: Message) -> Any:
        template = self.config.get("body")
        return message.body if template is None else render_value(template, message.context)

    def _headers(self, context: dict[str, Any], keys: list[str], body: bytes) -> dict[str, str]:
        values = {**context, "secret": self.secret}
        headers = {"Content-Type": "application/json", "User-Agent": "opencdp"}
        headers.update({name: render_text(value, values) for name, value in self.config["headers"].items()})
        headers["Idempotency-Key"] = keys[0] if len(keys) == 1 else _batch_key(keys)
        if self.secret:
            stamp = str(int(time.time()))
            headers["X-OpenCDP-Timestamp"] = stamp
            headers["X-OpenCDP-Signature"] = signature(self.secret, stamp, body)
        return headers

    def _missing(self, message: Message) -> str | None:
        """The first required value that renders empty, if any."""
        for name, template in self.config.get("required", {}).items():
            if render_value(template, message.context) in (None, "", [], {}):
                return name
        return None

    def _target(self, message: Message) -> tuple[str, str]:
        method = self.config.get("method", "POST")
        if "{" in method:
            method = render_text(method, message.context).strip().upper()
            if method not in METHODS:
                raise TemplateProblem(f"method rendered as {method!r}, not one of {', '.join(METHODS)}")
        return method, render_text(self.config["url"], message.context)

    async def send(self, messages: list[Message]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(messages)
        requests: list[tuple[list[int], bytes, dict[str, str], str, str]] = []
        size = int(self.config["batch_size"])
        # messages by where they go, in order: a batch never mixes URLs or methods
        targets: dict[tuple[str, str], list[tuple[int, Any]]] = {}
        for i, message in enumerate(messages):
            try:
                missing = self._missing(message)
                if missing is not None:
                    outcomes[i] = Outcome.fail(f"required value {missing!r} is empty: not sent")
                    continue
                body = self._body(message)
                targets.setdefault(self._target(message), []).append((i, body))
            except TemplateProblem as exc:
                outcomes[i] = Outcome.fail(str(exc))
        for (method, url), members in targets.items():
            for start in range(0, len(members), size):
                group = members[start : start + size]
                try:
                    requests.append(self._build(messages, group, size, method, url))
                except TemplateProblem as exc:  # the batch wrapper or a header
                    for i, _ in group:
                        outcomes[i] = Outcome.fail(str(exc))
        limit = asyncio.Semaphore(int(self.config["concurrency"]))

        async def one(method: str, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
            async with limit:
                return await self._request(method, url, body, headers)

        results = await asyncio.gather(
            *(one(method, url, body, headers) for _, body, headers, method, url in requests)
        )
        for (indexes, *_), outcome in zip(requests, results, strict=True):
            for i in indexes:
                outcomes[i] = outcome
        return [o or Outcome.fail("not sent") for o in outcomes]

    def _build(
        self, messages: list[Message], group: list[tuple[int, Any]], size: int, method: str, url: str
    ) -> tuple[list[int], bytes, dict[str, str], str, str]:
        first = messages[group[0][0]]
        if size == 1:
            payload = group[0][1]
        else:
            items = [body for _, body in group]
            wrapper = self.config.get("batch_body")
            context = {**first.context, "messages": items}
            payload = items if wrapper is None else render_value(wrapper, context)
        body = orjson.dumps(payload)
        keys = [messages[i].key for i, _ in group]
        return [i for i, _ in group], body, self._headers(first.context, keys, body), method, url

    async def _request(self, method: str, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        try:
            async with self._client().request(
                method, url, data=body, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                answer = (await response.content.read(2048)).decode("utf-8", "replace")
                wait = retry_after(response.headers.get("Retry-After"))
        except TimeoutError:
            return Outcome.again(f"timed out after {self.config['timeout_seconds']} s")
        except aiohttp.ClientError as exc:
            return Outcome.again(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        if 200 <= status < 300:
            return Outcome.ok()
        detail = f"HTTP {status}: {answer[:200]}".rstrip(": ")
        if status >= 500 or status in _RETRYABLE_4XX:
            return Outcome.again(detail, wait)
        return Outcome.fail(detail)  # other 4xx (and 3xx: redirects are not followed) cannot succeed as sent

    async def close(self) -> None:
        client = self.extra.pop("client", None)
        if client is not None:
            await client.close()


def _batch_key(keys: list[str]) -> str:
    return "batch-" + hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:32]
