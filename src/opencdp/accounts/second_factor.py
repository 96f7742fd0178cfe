"""The optional second factor of a customer account: a TOTP authenticator app (RFC 6238, the
30-second, 6-digit, SHA-1 kind every app understands) and single-use recovery codes.

The codes are made and checked by `cryptography`'s TOTP; nothing here computes an HOTP by hand.
The secret is sealed with the installation's key like destination secrets
(`activation/secrets.py`), so a copy of the database alone cannot produce codes. A code is accepted
one step either side of now (a phone's clock drifts), and only for a time step newer than the last
one accepted — claimed by a conditional UPDATE, so two servers cannot both accept the same code.
Recovery codes are 80 random bits each, stored as SHA-256 (like session tokens), each claimed once.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import segno
import sqlalchemy as sa
from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor import InvalidToken
from cryptography.hazmat.primitives.twofactor.totp import TOTP

from opencdp.activation.secrets import seal, unseal
from opencdp.config import Settings
from opencdp.store.schema import account_recovery_codes, account_second_factors

STEP_SECONDS = 30
DIGITS = 6
#: steps either side of now that are still accepted (clock skew of the customer's phone)
SKEW_STEPS = 1
SECRET_BYTES = 20  # 160 bits, as RFC 4226 recommends
RECOVERY_CODES = 10


class SecondFactorError(ValueError):
    """Set-up or switch-off that cannot be done (no set-up under way, on already, off already)."""


@dataclass(frozen=True)
class Setup:
    """A set-up waiting for its first code: what the customer copies into their app."""

    secret: bytes
    uri: str

    @property
    def qr(self) -> str:
        """The `otpauth://` URI as a QR code (an SVG data URI, made here: no outside service),
        which authenticator apps scan."""
        return str(segno.make(self.uri, error="m").svg_data_uri(scale=5, border=2))

    @property
    def text(self) -> str:
        """The secret in base32, in groups of four, for typing into an app by hand."""
        raw = base64.b32encode(self.secret).decode().rstrip("=")
        return " ".join(raw[i : i + 4] for i in range(0, len(raw), 4))


def _totp(secret: bytes) -> TOTP:
    return TOTP(secret, DIGITS, SHA1(), STEP_SECONDS, enforce_key_length=True)


def _digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def _clean(code: str) -> str:
    return "".join(c for c in code if c.isalnum()).upper()


def provisioning_uri(secret: bytes, account_name: str, issuer: str) -> str:
    """`otpauth://totp/Issuer:name?secret=…&issuer=Issuer…`, as cryptography writes it."""
    return _totp(secret).get_provisioning_uri(account_name, issuer)


def enabled(engine: sa.Engine, account_id: str) -> bool:
    with engine.connect() as conn:
        found = conn.execute(
            sa.select(account_second_factors.c.confirmed_at).where(
                account_second_factors.c.account_id == account_id
            )
        ).first()
    return found is not None and found.confirmed_at is not None


def begin(engine: sa.Engine, settings: Settings, account_id: str, account_name: str, issuer: str) -> Setup:
    """A new secret, waiting for its first code (replacing a set-up not finished before)."""
    if enabled(engine, account_id):
        raise SecondFactorError("the second factor is on already")
    secret = secrets.token_bytes(SECRET_BYTES)
    sealed, _ = seal(settings, base64.b32encode(secret).decode())
    with engine.begin() as conn:
        conn.execute(account_second_factors.delete().where(account_second_factors.c.account_id == account_id))
        conn.execute(
            account_second_factors.insert().values(
                account_id=account_id,
                secret=sealed,
                created_at=datetime.now(UTC),
                confirmed_at=None,
                last_step=None,
            )
        )
    return Setup(secret, provisioning_uri(secret, account_name, issuer))


def pending(
    engine: sa.Engine, settings: Settings, account_id: str, account_name: str, issuer: str
) -> Setup | None:
    """The set-up under way (to show again beside a wrong first code), if any."""
    secret = _secret(engine, settings, account_id, confirmed=False)
    return None if secret is None else Setup(secret, provisioning_uri(secret, account_name, issuer))


def _secret(engine: sa.Engine, settings: Settings, account_id: str, confirmed: bool) -> bytes | None:
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(account_second_factors).where(account_second_factors.c.account_id == account_id)
        ).first()
    if row is None or (row.confirmed_at is not None) != confirmed:
        return None
    sealed = unseal(settings, row.secret, None)
    return base64.b32decode(sealed) if sealed else None


def _matching_step(secret: bytes, code: str, now: float) -> int | None:
    """The time step whose code this is, within the accepted skew; None when it is none of them."""
    if len(code) != DIGITS or not code.isdigit():
        return None
    totp, current = _totp(secret), int(now) // STEP_SECONDS
    for step in range(current - SKEW_STEPS, current + SKEW_STEPS + 1):
        try:
            totp.verify(code.encode(), step * STEP_SECONDS)
        except InvalidToken:
            continue
        return step
    return None


def _claim_step(conn: sa.Connection, account_id: str, step: int, confirm: bool) -> bool:
    """Record `step` as used, unless it (or a newer one) was used already: replay refused."""
    table = account_second_factors
    confirmed = table.c.confirmed_at.is_(None) if confirm else table.c.confirmed_at.is_not(None)
    values: dict[str, object] = {"last_step": step}
    if confirm:
        values["confirmed_at"] = datetime.now(UTC)
    done = conn.execute(
        table.update()
        .where(
            table.c.account_id == account_id,
            confirmed,
            sa.or_(table.c.last_step.is_(None), table.c.last_step < step),
        )
        .values(**values)
    )
    return done.rowcount == 1


def confirm(
    engine: sa.Engine, settings: Settings, account_id: str, code: str, now: float | None = None
) -> list[str] | None:
    """Switch the second factor on with the first code from the app: the recovery codes (shown
    once, only their hashes are kept), or None when the code is wrong or there is no set-up."""
    secret = _secret(engine, settings, account_id, confirmed=False)
    step = (
        None if secret is None else _matching_step(secret, _clean(code), time.time() if now is None else now)
    )
    if step is None:
        return None
    codes = [_recovery_code() for _ in range(RECOVERY_CODES)]
    with engine.begin() as conn:
        if not _claim_step(conn, account_id, step, confirm=True):
            return None
        conn.execute(account_recovery_codes.delete().where(account_recovery_codes.c.account_id == account_id))
        conn.execute(
            account_recovery_codes.insert(),
            [{"account_id": account_id, "code_hash": _digest(_clean(c)), "used_at": None} for c in codes],
        )
    return codes


def _recovery_code() -> str:
    raw = base64.b32encode(secrets.token_bytes(10)).decode()  # 80 bits, 16 characters
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4)).lower()


def check(
    engine: sa.Engine, settings: Settings, account_id: str, code: str, now: float | None = None
) -> str | None:
    """How the code proved the second factor — "totp" or "recovery_code" — or None: wrong, replayed,
    used already, or the second factor is off."""
    cleaned = _clean(code)
    if len(cleaned) == DIGITS:
        secret = _secret(engine, settings, account_id, confirmed=True)
        step = (
            None if secret is None else _matching_step(secret, cleaned, time.time() if now is None else now)
        )
        if step is None:
            return None
        with engine.begin() as conn:
            return "totp" if _claim_step(conn, account_id, step, confirm=False) else None
    if len(cleaned) != 16:
        return None
    table = account_recovery_codes
    with engine.begin() as conn:
        done = conn.execute(
            table.update()
            .where(
                table.c.account_id == account_id,
                table.c.code_hash == _digest(cleaned),
                table.c.used_at.is_(None),
            )
            .values(used_at=datetime.now(UTC))
        )
    return "recovery_code" if done.rowcount == 1 else None


def recovery_codes_left(engine: sa.Engine, account_id: str) -> int:
    table = account_recovery_codes
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).where(table.c.account_id == account_id, table.c.used_at.is_(None))
            ).scalar_one()
        )


def disable(engine: sa.Engine, account_id: str) -> None:
    """Switch it off: the secret and every recovery code go."""
    with engine.begin() as conn:
        conn.execute(account_second_factors.delete().where(account_second_factors.c.account_id == account_id))
        conn.execute(account_recovery_codes.delete().where(account_recovery_codes.c.account_id == account_id))
