"""Accounts: an e-mail address, a password hash, whether the address is verified. Nothing else —
a name or consent given at registration goes to the profile as events (`accounts/events.py`)."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from opencdp.accounts.passwords import Passwords
from opencdp.store.schema import account_sessions, account_tokens, accounts

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class AccountError(ValueError):
    """An account operation that cannot be done; the message is shown to people as it is."""


@dataclass(frozen=True)
class Account:
    id: str
    #: "" for an account made by a social login that brought no address it may keep
    email: str
    created_at: datetime
    email_verified_at: datetime | None
    password_changed_at: datetime
    disabled: bool

    @property
    def verified(self) -> bool:
        return self.email_verified_at is not None


def normalise_email(email: str) -> str:
    value = email.strip().lower()
    if not _EMAIL.match(value) or len(value) > 320:
        raise AccountError("Enter an e-mail address such as name@example.com.")
    return value


def new_id() -> str:
    """`acct_` and 128 random bits: the user id of the customer's events, stable for life."""
    return "acct_" + secrets.token_hex(16)


def _account(row: sa.Row[tuple[object, ...]]) -> Account:
    return Account(
        row.id,
        row.email or "",
        row.created_at,
        row.email_verified_at,
        row.password_changed_at,
        bool(row.disabled),
    )


def find(engine: sa.Engine, *, email: str | None = None, account_id: str | None = None) -> Account | None:
    query = sa.select(accounts)
    if email is not None:
        query = query.where(accounts.c.email == email.strip().lower())
    elif account_id is not None:
        query = query.where(accounts.c.id == account_id)
    else:
        raise TypeError("find needs an email or an account_id")
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return _account(row) if row else None


def create(engine: sa.Engine, email: str, password_hash: str, now: datetime | None = None) -> Account | None:
    """The new account, or None when the address has one already (the caller must not say so)."""
    now = now or datetime.now(UTC)
    account_id = new_id()
    try:
        with engine.begin() as conn:
            conn.execute(
                accounts.insert().values(
                    id=account_id,
                    email=email,
                    password_hash=password_hash,
                    created_at=now,
                    email_verified_at=None,
                    password_changed_at=now,
                    disabled=False,
                )
            )
    except sa.exc.IntegrityError:
        return None
    return find(engine, account_id=account_id)


def authenticate(engine: sa.Engine, passwords: Passwords, email: str, password: str) -> Account | None:
    """The account when e-mail and password match an enabled account. An unknown address costs
    a hash all the same (see Passwords.verify). Raises HasherBusy when the hasher is full."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(accounts).where(accounts.c.email == email.strip().lower())).first()
    if not passwords.verify(row.password_hash if row else None, password) or row is None or row.disabled:
        return None
    if passwords.needs_rehash(row.password_hash):
        digest = passwords.hash(password)
        with engine.begin() as conn:
            conn.execute(accounts.update().where(accounts.c.id == row.id).values(password_hash=digest))
    return _account(row)


def mark_verified(engine: sa.Engine, account_id: str, now: datetime | None = None) -> bool:
    """True when this call verified the address (False: it was verified already)."""
    with engine.begin() as conn:
        done = conn.execute(
            accounts.update()
            .where(accounts.c.id == account_id, accounts.c.email_verified_at.is_(None))
            .values(email_verified_at=now or datetime.now(UTC))
        )
    return done.rowcount == 1


def set_password(engine: sa.Engine, account_id: str, password_hash: str, now: datetime | None = None) -> None:
    """A new password ends every session and revokes every token of the account: whoever knew
    the old one is out everywhere."""
    now = now or datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            accounts.update()
            .where(accounts.c.id == account_id)
            .values(password_hash=password_hash, password_changed_at=now)
        )
        conn.execute(account_sessions.delete().where(account_sessions.c.account_id == account_id))
        conn.execute(
            account_tokens.update().where(account_tokens.c.account_id == account_id).values(revoked=True)
        )
