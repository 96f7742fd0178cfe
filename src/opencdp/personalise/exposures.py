"""Which decisions become `Experience Viewed` events: the first exposure of a visitor to an
experience's arm (variant, or held out) within a visit, not every page view that repeats it.

A page asks for its placements on every view; logging each answer would turn every page view into
up to one event per placement for the processor, while the uplift report only needs the first
exposure (it assigns each profile by it) and reports count visitors. An exposure is logged again
when the arm, the visitor's identifiers or the experience's version change, or after the session
gap without one. The memory is per server process and bounded (oldest forgotten first): a
restart or another process logs an exposure again, which the report tolerates.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any


class ExposureMemory:
    """Remembers logged exposures for `seconds`; at most `capacity` of them."""

    def __init__(self, seconds: float, capacity: int = 200_000) -> None:
        self.seconds = seconds
        self.capacity = capacity
        self._seen: OrderedDict[tuple[Any, ...], float] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(row: dict[str, Any]) -> tuple[Any, ...]:
        props = row["payload"]["properties"]
        return (
            row.get("user_id"),
            row.get("anonymous_id"),
            props["experience_id"],
            props["version"],
            props["variant"],
            props["holdout"],
            props["reason"],
        )

    def fresh(self, rows: list[dict[str, Any]], now: float | None = None) -> list[dict[str, Any]]:
        """The rows not logged within the last `seconds`; they are remembered from now on."""
        now = time.monotonic() if now is None else now
        out = []
        with self._lock:
            for row in rows:
                key = self.key(row)
                seen = self._seen.get(key)
                if seen is not None and now - seen < self.seconds:
                    self._seen.move_to_end(key)  # an ongoing visit: its exposure stays remembered
                    self._seen[key] = now
                    continue
                self._seen[key] = now
                self._seen.move_to_end(key)
                out.append(row)
            while len(self._seen) > self.capacity:
                self._seen.popitem(last=False)
        return out
