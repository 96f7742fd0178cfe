"""The marketer's dashboard: a server-rendered web UI under `/` (see docs/ui.md).

`router` holds every dashboard route; `app.include_router(router)` is all the wiring it needs.
Pages are Jinja2 templates with autoescaping on everywhere, charts are inline SVG rendered on the
server, and the only script is the segment builder's small vanilla JS file. Nothing is loaded
from other sites (the Content-Security-Policy forbids it).
"""

from __future__ import annotations

from opencdp.ui.routes import router

__all__ = ["router"]
