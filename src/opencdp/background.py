"""Work started from the API or the dashboard that outlives the request: one run per name at a
time, in a daemon thread of the serving process (prediction models, matching jobs)."""

from __future__ import annotations

import threading
from collections.abc import Callable


class OnePerName:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._running: set[str] = set()
        self._lock = threading.Lock()

    def running(self) -> set[str]:
        """The names being worked on now."""
        with self._lock:
            return set(self._running)

    def start(self, name: str, work: Callable[[], None]) -> bool:
        """Run `work` in a thread unless a run of `name` is going on (then False)."""
        with self._lock:
            if name in self._running:
                return False
            self._running.add(name)

        def run() -> None:
            try:
                work()
            finally:
                with self._lock:
                    self._running.discard(name)

        threading.Thread(target=run, name=f"{self.kind}-{name}", daemon=True).start()
        return True
