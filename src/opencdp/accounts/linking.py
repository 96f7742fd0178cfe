"""Social logins linked to accounts (`account_logins`): a provider's subject signs in to one
account. Only credentials are kept here — the provider's name and subject, and how the link was
proven; what the provider says about the person reaches the profile as events.

The rules (docs/identity.md, "Account linking"): a login is linked to an existing account only
after proof — the customer is signed in to that account (`session`), or the provider vouches for
an address it is trusted for and the account's own address is verified (`verified_email`). An
account made by a social sign-up has the proof `signup`. The last way to sign in (the password,
or the only linked login of an account without one) cannot be unlinked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from opencdp.accounts.store import Account, find, new_id
from opencdp.store.schema import account_logins, accounts

SIGNUP, SESSION, VERIFIED_EMAIL = "signup", "session", "verified_email"
#: How the 360° view and the `Account Linked` event's `method` describe each proof.
PROOFS = {
    SIGNUP: "the account was made by this login",
    SESSION: "a signed-in session",
    VERIFIED_EMAIL: "a verified e-mail",
}


class LinkRefused(ValueError):
    """The link or unlink cannot be done; the message is shown to the customer."""


@dataclass(frozen=True)
class Login:
    provider: str
    subject: str
    account_id: str
    proof: str
    linked_at: datetime
    last_used_at: datetime


def _login(row: sa.Row[tuple[object, ...]]) -> Login:
    return Login(row.provider, row.subject, row.account_id, row.proof, row.linked_at, row.last_used_at)


def find_login(engine: sa.Engine, provider: str, subject: str) -> Login | None:
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(account_logins).where(
                account_logins.c.provider == provider, account_logins.c.subject == subject
            )
        ).first()
    return _login(row) if row else None


def logins_of(engine: sa.Engine, account_id: str) -> list[Login]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(account_logins)
            .where(account_logins.c.account_id == account_id)
            .order_by(account_logins.c.provider)
        ).all()
    return [_login(r) for r in rows]


def has_password(engine: sa.Engine, account_id: str) -> bool:
    with engine.connect() as conn:
        found = conn.execute(sa.select(accounts.c.password_hash).where(accounts.c.id == account_id)).first()
    return found is not None and found.password_hash is not None


def touch(engine: sa.Engine, login: Login, now: datetime | None = None) -> None:
    with engine.begin() as conn:
        conn.execute(
            account_logins.update()
            .where(account_logins.c.provider == login.provider, account_logins.c.subject == login.subject)
            .values(last_used_at=now or datetime.now(UTC))
        )


def _insert(
    conn: sa.Connection, account_id: str, provider: str, subject: str, proof: str, now: datetime
) -> None:
    if proof not in PROOFS:
        raise ValueError(f"unknown proof {proof!r}")
    taken = conn.execute(
        sa.select(account_logins.c.subject).where(
            account_logins.c.account_id == account_id, account_logins.c.provider == provider
        )
    ).first()
    if taken is not None:
        raise LinkRefused(f"This account is linked to another {provider} login already.")
    conn.execute(
        account_logins.insert().values(
            provider=provider, subject=subject, account_id=account_id, proof=proof,
            linked_at=now, last_used_at=now,
        )
    )  # fmt: skip


def link(
    engine: sa.Engine, account_id: str, provider: str, subject: str, proof: str, now: datetime | None = None
) -> None:
    """Link the login to the account. Raises LinkRefused when the login belongs to an account
    (this one or another: a login is never moved silently) or the account has this provider."""
    try:
        with engine.begin() as conn:
            _insert(conn, account_id, provider, subject, proof, now or datetime.now(UTC))
    except sa.exc.IntegrityError:
        raise LinkRefused(f"This {provider} login belongs to an account already.") from None


def sign_up(
    engine: sa.Engine, provider: str, subject: str, email: str | None, now: datetime | None = None
) -> Account | None:
    """A new account made by a social login, with no password. `email` is an address the
    provider vouches for and is trusted for (so it counts as verified), or None. Returns None
    when the address has an account or the login was linked meanwhile (the caller looks again)."""
    now = now or datetime.now(UTC)
    account_id = new_id()
    try:
        with engine.begin() as conn:
            conn.execute(
                accounts.insert().values(
                    id=account_id, email=email, password_hash=None, created_at=now,
                    email_verified_at=now if email else None, password_changed_at=now, disabled=False,
                )
            )  # fmt: skip
            _insert(conn, account_id, provider, subject, SIGNUP, now)
    except sa.exc.IntegrityError:
        return None
    return find(engine, account_id=account_id)


def unlink(engine: sa.Engine, account_id: str, provider: str) -> Login:
    """Remove the account's login at `provider`; refuses to remove the last way to sign in."""
    with engine.begin() as conn:
        rows = conn.execute(
            sa.select(account_logins).where(account_logins.c.account_id == account_id).with_for_update()
        ).all()
        gone = next((_login(r) for r in rows if r.provider == provider), None)
        if gone is None:
            raise LinkRefused(f"This account has no {provider} login.")
        password = conn.execute(
            sa.select(accounts.c.password_hash).where(accounts.c.id == account_id)
        ).scalar()
        if password is None and len(rows) == 1:
            raise LinkRefused(
                f"{provider} is the only way to sign in to this account: set a password "
                "(\u201cforgot password\u201d) or link another login first."
            )
        conn.execute(
            account_logins.delete().where(
                account_logins.c.provider == provider, account_logins.c.subject == gone.subject
            )
        )
    return gone
