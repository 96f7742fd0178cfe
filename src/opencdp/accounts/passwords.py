"""Customer passwords: argon2id with a bounded cost.

The parameters are OWASP's minimum for argon2id (19 MiB, 2 passes, 1 lane: about 20 ms of one
core), lower than the dashboard's because customers sign in in floods the dashboard never sees;
and every computation — unknown e-mails included — waits for one of a few slots
(`access.passwords.HashGate`), so a sign-in flood costs at most `slots` cores and x 19 MiB while
collection goes on. Hashes made with other parameters are upgraded at the next sign-in.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from argon2 import PasswordHasher

from opencdp.access.passwords import HasherBusy, HashGate, verify

__all__ = ["HasherBusy", "Passwords"]

MEMORY_KIB, PASSES, LANES = 19 * 1024, 2, 1


class Passwords:
    """`queue`: sign-ins that may wait for a slot. They wait in the event loop (`admitted`), not
    on worker threads: a thread-pool thread blocked on the gate is one the collector's and the
    API's sync routes no longer have, so only `slots` threads ever hold the gate."""

    def __init__(self, slots: int = 2, queue: int = 128) -> None:
        self.hasher = PasswordHasher(time_cost=PASSES, memory_cost=MEMORY_KIB, parallelism=LANES)
        self.gate = HashGate(slots=slots, queue=queue)
        self.slots, self.queue = slots, queue
        self._turns: asyncio.Semaphore | None = None
        self._waiting = 0
        self._dummy: str | None = None

    @contextlib.asynccontextmanager
    async def admitted(self) -> AsyncIterator[None]:
        """A turn at the hasher for the work inside (run it on a thread); HasherBusy at once when
        `queue` sign-ins wait already. Call from the event loop of the app that owns this."""
        if self._turns is None:
            self._turns = asyncio.Semaphore(self.slots)
        if self._waiting >= self.slots + self.queue:
            raise HasherBusy
        self._waiting += 1
        try:
            async with self._turns:
                yield
        finally:
            self._waiting -= 1

    def hash(self, password: str) -> str:
        return self.gate.run(self.hasher.hash, password)

    def verify(self, digest: str | None, password: str) -> bool:
        """True when the password matches; with no digest (unknown e-mail) a dummy hash is
        verified all the same, so the answer takes as long either way."""
        if digest is None:
            if self._dummy is None:
                self._dummy = self.hash("not the password of anyone at all")
            verify(self.hasher, self.gate, self._dummy, password)
            return False
        return verify(self.hasher, self.gate, digest, password)

    def needs_rehash(self, digest: str) -> bool:
        return self.hasher.check_needs_rehash(digest)
