"""Password hashing with argon2id, bounded: at most a few hashes at once, whoever asks.

Shared by the dashboard's staff users (`ui/users.py`) and customer accounts (`accounts/`):
each has its own `PasswordHasher` parameters and its own `HashGate`, so a flood of customer
sign-ins cannot lock staff out, and neither can take more than its slots of memory and CPU.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


@lru_cache(maxsize=1)
def hasher() -> PasswordHasher:
    """The dashboard's: argon2-cffi's defaults (argon2id, 64 MiB, 3 passes), about 50 ms a sign-in."""
    return PasswordHasher()


class HasherBusy(Exception):
    """Too many sign-ins are already waiting for the password hasher; try again in a moment."""


class HashGate:
    """At most `slots` argon2 computations at once, and at most `queue` more waiting for one.

    Each computation takes 64 MiB and a core for about 50 ms. Unbounded, a flood of sign-ins
    (unknown e-mails cost a hash too) took a server from 300 MiB to 2.7 GiB and starved the
    collector of CPU; bounded, the flood costs `slots` x 64 MiB and the excess is refused at once.
    """

    def __init__(self, slots: int = 2, queue: int = 8, wait_seconds: float = 10.0) -> None:
        self.slots, self.queue, self.wait_seconds = slots, queue, wait_seconds
        self._semaphore = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self._admitted = 0  # computing or waiting

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        with self._lock:
            if self._admitted >= self.slots + self.queue:
                raise HasherBusy
            self._admitted += 1
        try:
            if not self._semaphore.acquire(timeout=self.wait_seconds):
                raise HasherBusy
            try:
                yield
            finally:
                self._semaphore.release()
        finally:
            with self._lock:
                self._admitted -= 1


def verify(hasher: PasswordHasher, gate: HashGate, digest: str, password: str) -> bool:
    """True when `password` matches `digest`; a malformed digest is a mismatch."""
    with gate.slot():
        try:
            return hasher.verify(digest, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
