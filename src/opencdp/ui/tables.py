"""The dashboard's tables (migration 0006), declared with every other table in `store/schema.py`."""

from opencdp.store.schema import reports, ui_sessions, users

__all__ = ["reports", "ui_sessions", "users"]
