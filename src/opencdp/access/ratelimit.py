"""Rate limits per write key: a token bucket per source, in memory.

One runaway client (a loop, a replayed queue) must not starve the log writer for every other
source. Each request takes one token; tokens refill at `rate` per second up to `burst`. A refused
request gets 429 with Retry-After, which the Segment and RudderStack clients retry with back-off,
so a short overload delays events instead of losing them. Buckets live in the server process:
with several `serve` processes each one enforces the limit on its own share of the traffic.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from opencdp.config import ConfigError

ENV_VAR = "OPENCDP_RATE_LIMIT"
DEFAULT = "200:400"


@dataclass(frozen=True)
class RateLimit:
    rate: float  # requests per second, sustained
    burst: int  # requests allowed at once after a quiet spell

    @classmethod
    def parse(cls, text: str, name: str = ENV_VAR) -> RateLimit | None:
        """ "RATE" or "RATE:BURST" (burst defaults to twice the rate); "0" or "off" means no limit."""
        text = text.strip().lower()
        if text in {"0", "off", "none"}:
            return None
        rate_text, _, burst_text = text.partition(":")
        try:
            rate = float(rate_text)
            burst = int(burst_text) if burst_text else max(1, int(rate * 2))
        except (ValueError, OverflowError):
            raise ConfigError(
                f"{name} must be RATE or RATE:BURST (requests per second, e.g. 200:400) or off, got {text!r}"
            ) from None
        if not (math.isfinite(rate) and rate > 0 and burst >= 1):
            raise ConfigError(f"{name} needs a rate above 0 and a burst of at least 1, got {text!r}")
        return cls(rate, burst)

    @classmethod
    def from_env(cls) -> RateLimit | None:
        return cls.parse(os.environ.get(ENV_VAR) or DEFAULT)


class TokenBuckets:
    """One bucket per key (a source id). Thread-safe; a few hundred nanoseconds per request."""

    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._buckets: dict[int, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: int) -> float:
        """Take a token: 0.0 if the request may go ahead, else the seconds until one is available."""
        rate, burst = self.limit.rate, float(self.limit.burst)
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(key, (burst, now))
            tokens = min(burst, tokens + (now - at) * rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / rate
