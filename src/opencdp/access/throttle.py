"""Throttling of password guessing, shared by the dashboard's sign-in and customer accounts:
failures are counted per client address (one machine guessing many accounts) and per account
(many machines guessing one), in bounded memory, per server process."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

MAX_FAILURES, WINDOW_SECONDS = 5, 15 * 60
#: One address may fail more often than one account: many people share an address (an office, a
#: mobile carrier's NAT), and five typos among them must not lock all of them out.
ADDRESS_FAILURES = 30
#: Keys remembered per table; beyond it the longest-quiet keys are forgotten first.
MAX_KEYS = 10_000


class FailureLog:
    """Failed sign-ins per key in the last `window` seconds, in bounded memory: each key keeps at
    most `limit` times, and at most `max_keys` keys are kept."""

    def __init__(
        self,
        limit: int = MAX_FAILURES,
        window: float = WINDOW_SECONDS,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit, self.window, self.max_keys, self._clock = limit, window, max_keys, clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._failures)

    def retry_after(self, key: str) -> float:
        """0 when `key` may try again, else the seconds until its oldest failure is forgotten."""
        now = self._clock()
        with self._lock:
            times = self._failures.get(key)
            if times is None:
                return 0.0
            while times and times[0] <= now - self.window:
                times.popleft()
            if not times:
                del self._failures[key]
                return 0.0
            return times[0] + self.window - now if len(times) >= self.limit else 0.0

    def failed(self, key: str) -> None:
        with self._lock:
            times = self._failures.pop(key, None) or deque(maxlen=self.limit)
            times.append(self._clock())
            self._failures[key] = times  # now the most recent
            while len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)

    def clear(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)


class SignInThrottle:
    """Per client address (one machine guessing many accounts) and per account (many machines
    guessing one). In memory, per server process; one per application."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.by_address = FailureLog(limit=ADDRESS_FAILURES, clock=clock)
        self.by_account = FailureLog(clock=clock)

    def retry_after(self, address: str, account: str) -> float:
        return max(self.by_address.retry_after(address), self.by_account.retry_after(account))

    def failed(self, address: str, account: str) -> None:
        self.by_address.failed(address)
        self.by_account.failed(account)

    def succeeded(self, address: str, account: str) -> None:
        """The account's failures are forgotten; the address's are not (they age out): otherwise
        one machine could try a password on many accounts and reset its count by signing in to
        its own every few tries."""
        self.by_account.clear(account)
