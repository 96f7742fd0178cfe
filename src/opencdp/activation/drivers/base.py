"""What every destination driver is: it validates its configuration once, when the destination is
saved, and then sends batches of messages, answering with one outcome per message.

A driver never decides whether to send (consent, erasure and retries are the worker's): it renders
each message with its own templates and hands it over, reporting what happened as `Outcome`s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal


class DestinationConfigError(ValueError):
    """A destination's configuration cannot work; `field` names the offending key (HTTP 422)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Message:
    """One delivery, ready to render.

    `key` is the delivery's idempotency key: the same across retries, so receivers can
    de-duplicate (sent as a header, message id or de-duplication id). `context` is what templates
    see: `kind` ("event" or "audience"), `event` (the Segment-spec event), `profile` (id, traits,
    computed, consent), `action` ("add"/"remove" for audiences), `segment`, `destination`.
    `body` is the default JSON body when the destination has no template of its own.
    """

    delivery_id: int
    key: str
    context: dict[str, Any]
    body: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    """What happened to one message.

    - `delivered`: the receiver took it.
    - `retry`: worth trying again (network error, 5xx, 429, timeout); `after` seconds if the
      receiver said when (Retry-After), else the worker's back-off decides.
    - `failed`: cannot succeed as it is (most 4xx, a template error): dead-lettered at once.
    """

    status: Literal["delivered", "retry", "failed"]
    error: str | None = None
    after: float | None = None

    @classmethod
    def ok(cls) -> Outcome:
        return cls("delivered")

    @classmethod
    def again(cls, error: str, after: float | None = None) -> Outcome:
        return cls("retry", error, after)

    @classmethod
    def fail(cls, error: str) -> Outcome:
        return cls("failed", error)


@dataclass
class Driver:
    """Base of the destination kinds. Subclasses set `kind`, implement `validate` and `send`.

    `config` is the validated configuration (no secrets); `secret` is the destination's secret
    (password, token or signing key) already decrypted or read from its environment variable.
    """

    kind: ClassVar[str]
    config: dict[str, Any]
    secret: str | None = field(default=None, repr=False)  # never in a log line or traceback
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def validate(cls, config: dict[str, Any]) -> dict[str, Any]:
        """The configuration as stored, with defaults filled in; raise DestinationConfigError."""
        raise NotImplementedError

    def batch_size(self) -> int:
        """How many messages one `send` call takes at most (they may still go one by one)."""
        return 100

    def every_seconds(self) -> float | None:
        """For scheduled destinations (a file drop): deliveries wait and go together once per
        this many seconds. None: as soon as they are due."""
        return None

    async def send(self, messages: list[Message]) -> list[Outcome]:
        """Send the messages; exactly one outcome per message, in order. Must not raise for a
        delivery problem (return `retry`/`failed`); an exception counts as `retry` for all."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release connections (called when the worker stops or the destination changes)."""
