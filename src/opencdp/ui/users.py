"""Dashboard users: argon2id password hashes, roles, enabling and disabling.

Roles: `admin` and `marketer` may change things (save and delete segments and reports);
`analyst` is read-only (may look, preview and export). Passwords use argon2id because, unlike
the random API keys (`access/keys.py`), they are chosen by people and must resist guessing
from a stolen database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from opencdp.access.passwords import HasherBusy, HashGate, hasher, verify  # noqa: F401 (used as users.X)
from opencdp.ui.tables import ui_sessions, users

ROLES = ("admin", "marketer", "analyst")
#: Roles that may save, duplicate and delete segments and reports.
EDITORS = frozenset({"admin", "marketer"})
MIN_PASSWORD_LENGTH = 10
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class UserError(ValueError):
    """A user operation that cannot be done; the message says why (shown to people as is)."""


@dataclass(frozen=True)
class User:
    id: int
    email: str
    role: str
    created_at: datetime
    disabled: bool

    @property
    def can_edit(self) -> bool:
        return self.role in EDITORS


#: One gate for the process: every hash and verification goes through it (the dummy one too).
gate = HashGate()


def hash_password(password: str) -> str:
    return gate.run(hasher().hash, password)


def _verify(digest: str, password: str) -> bool:
    return verify(hasher(), gate, digest, password)


_dummy: list[str] = []


def _dummy_hash() -> str:
    if not _dummy:
        _dummy.append(hash_password("not a password of anyone"))
    return _dummy[0]


def normalise_email(email: str) -> str:
    value = email.strip().lower()
    if not _EMAIL.match(value) or len(value) > 320:
        raise UserError(f"{email!r} is not an e-mail address")
    return value


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")


def _user(row: sa.Row[tuple[object, ...]]) -> User:
    return User(row.id, row.email, row.role, row.created_at, bool(row.disabled))


def create_user(engine: sa.Engine, email: str, password: str, role: str) -> User:
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    address = normalise_email(email)
    check_password(password)
    digest = hash_password(password)
    with engine.begin() as conn:
        if conn.execute(sa.select(users.c.id).where(users.c.email == address)).first():
            raise UserError(f"a user with e-mail {address!r} already exists")
        conn.execute(
            users.insert().values(
                email=address, password_hash=digest, role=role, created_at=datetime.now(UTC), disabled=False
            )
        )
        return _user(conn.execute(sa.select(users).where(users.c.email == address)).one())


def list_users(engine: sa.Engine) -> list[User]:
    with engine.connect() as conn:
        return [_user(r) for r in conn.execute(sa.select(users).order_by(users.c.email))]


def get_user(engine: sa.Engine, email: str) -> User:
    address = email.strip().lower()
    with engine.connect() as conn:
        row = conn.execute(sa.select(users).where(users.c.email == address)).first()
    if row is None:
        raise UserError(f"no user with e-mail {address!r}")
    return _user(row)


def set_disabled(engine: sa.Engine, email: str, disabled: bool) -> None:
    """Disabling also ends the user's sessions at once (not only at their next expiry)."""
    user = get_user(engine, email)
    with engine.begin() as conn:
        conn.execute(users.update().where(users.c.id == user.id).values(disabled=disabled))
        if disabled:
            conn.execute(ui_sessions.delete().where(ui_sessions.c.user_id == user.id))


def set_password(engine: sa.Engine, email: str, password: str) -> None:
    """A new password also ends every open session of that user."""
    user = get_user(engine, email)
    check_password(password)
    with engine.begin() as conn:
        conn.execute(
            users.update().where(users.c.id == user.id).values(password_hash=hash_password(password))
        )
        conn.execute(ui_sessions.delete().where(ui_sessions.c.user_id == user.id))


def set_role(engine: sa.Engine, email: str, role: str) -> None:
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    user = get_user(engine, email)
    with engine.begin() as conn:
        conn.execute(users.update().where(users.c.id == user.id).values(role=role))


def authenticate(engine: sa.Engine, email: str, password: str) -> User | None:
    """The user when the e-mail and password match an enabled account, else None.

    Unknown e-mails cost one hash verification too, so response time does not tell which
    addresses have accounts. Hashes made with older parameters are upgraded on success.
    Raises HasherBusy when too many sign-ins are already waiting (see HashGate)."""
    address = email.strip().lower()
    with engine.connect() as conn:
        row = conn.execute(sa.select(users).where(users.c.email == address)).first()
    if row is None:
        _verify(_dummy_hash(), password)
        return None
    if not _verify(row.password_hash, password) or row.disabled:
        return None
    if hasher().check_needs_rehash(row.password_hash):
        digest = hash_password(password)
        with engine.begin() as conn:
            conn.execute(users.update().where(users.c.id == row.id).values(password_hash=digest))
    return _user(row)
