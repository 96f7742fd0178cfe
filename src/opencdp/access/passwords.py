"""Password hashing with argon2id, bounded: at most a few hashes at once, whoever asks.

Shared by the dashboard's staff users (`ui/users.py`) and customer accounts (`accounts/`):
each has its own `PasswordHasher` parameters and its own `HashGate`, so a flood of customer
sign-ins cannot lock staff out, and neither can take more than its slots of memory and CPU.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


@lru_cache(maxsize=1)
def hasher() -> PasswordHasher:
    """The dashboard's: argon2-cffi's defaults (argon2id, 64 MiB, 3 passes), about 50 ms a sign-in."""
    return PasswordHasher()


T = TypeVar("T")
#: the hasher threads' niceness: hashing yields the cores to collection whenever both want them
HASHER_NICENESS = 19


def _lower_priority() -> None:
    """Linux schedules threads one by one: this hasher thread alone becomes nice. (Elsewhere the
    call would renice the whole process, so it is left out there.)"""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHER_NICENESS)


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
        self._pool: ThreadPoolExecutor | None = None

    def run(self, work: Callable[..., T], *args: object) -> T:
        """`work(*args)` in a slot, on one of the gate's own threads of low CPU priority: a
        sign-in flood gets the cores only when collection and the rest leave them idle."""
        with self.slot():
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(
                        self.slots, thread_name_prefix="opencdp-hasher", initializer=_lower_priority
                    )
            return self._pool.submit(work, *args).result()

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
    try:
        return gate.run(hasher.verify, digest, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
