"""The garbage collector in long-running processes (`serve`, its processor child, `worker`).

CPython's full collection walks every object the collector tracks. After start-up a server holds
several hundred thousand that never become garbage (FastAPI, SQLAlchemy, pydantic, the holiday
tables), and walking them stopped every request for 110 to 160 ms from time to time: that was the
decide benchmark's p99 at 250 decisions/s. `gc.freeze()` moves what exists at that moment into a
permanent generation the collector skips; everything made later is collected as before.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Once start-up is done: collect its garbage, then keep what is left out of later collections."""
    gc.collect()
    gc.freeze()
