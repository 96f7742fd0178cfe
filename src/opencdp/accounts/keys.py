"""The provider's signing keys (RS256), kept in the database so every server process signs and
verifies with the same ones.

Rotation: `rotate` adds a key, which signs from then on (the newest live key signs); older live
keys stay in the JWKS, so tokens they signed still verify at relying parties until `retire`
removes them (after the longest token lifetime, typically a day). The private key is sealed with
the installation's secret key, like destination secrets (`activation/secrets.py`): a copy of the
database alone cannot sign tokens. Keys are generated and used by joserfc; nothing here does
cryptography by hand.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from joserfc.jwk import KeySet, RSAKey

from opencdp.activation.secrets import seal, unseal
from opencdp.config import Settings
from opencdp.store.schema import account_signing_keys

ALGORITHM = "RS256"
KEY_BITS = 2048


class SigningKeyError(ValueError):
    """A key operation that cannot be done (unknown kid, retiring the signing key)."""


@dataclass(frozen=True)
class KeyInfo:
    kid: str
    algorithm: str
    created_at: datetime
    retired_at: datetime | None
    signing: bool


def rotate(engine: sa.Engine, settings: Settings, now: datetime | None = None) -> str:
    """Make a new key; it signs from now on. Returns its kid."""
    key = RSAKey.generate_key(KEY_BITS, parameters={"use": "sig", "alg": ALGORITHM}, auto_kid=True)
    sealed, _ = seal(settings, key.as_pem(private=True).decode())
    if sealed is None:
        raise RuntimeError("the private key could not be sealed")
    with engine.begin() as conn:
        conn.execute(
            account_signing_keys.insert().values(
                kid=key.kid,
                algorithm=ALGORITHM,
                public_jwk=key.as_dict(private=False),
                private_key=sealed,
                created_at=now or datetime.now(UTC),
                retired_at=None,
            )
        )
    return str(key.kid)


def _live(conn: sa.Connection) -> list[sa.Row[tuple[object, ...]]]:
    return list(
        conn.execute(
            sa.select(account_signing_keys)
            .where(account_signing_keys.c.retired_at.is_(None))
            .order_by(account_signing_keys.c.created_at.desc(), account_signing_keys.c.kid)
        )
    )


def list_keys(engine: sa.Engine) -> list[KeyInfo]:
    with engine.connect() as conn:
        rows = list(
            conn.execute(sa.select(account_signing_keys).order_by(account_signing_keys.c.created_at.desc()))
        )
        live = _live(conn)
    signer = live[0].kid if live else None
    return [KeyInfo(r.kid, r.algorithm, r.created_at, r.retired_at, r.kid == signer) for r in rows]


def retire(engine: sa.Engine, kid: str, now: datetime | None = None) -> None:
    """Remove a key from the JWKS: tokens it signed no longer verify. The signing key cannot be
    retired (rotate first)."""
    with engine.begin() as conn:
        live = _live(conn)
        if live and live[0].kid == kid:
            raise SigningKeyError(f"key {kid!r} signs new tokens; rotate to a new key before retiring it")
        done = conn.execute(
            account_signing_keys.update()
            .where(account_signing_keys.c.kid == kid, account_signing_keys.c.retired_at.is_(None))
            .values(retired_at=now or datetime.now(UTC))
        )
        if done.rowcount != 1:
            raise SigningKeyError(f"no live key {kid!r}")


class SigningKeys:
    """The live keys as this process knows them, re-read at most every `refresh_seconds` (so a
    rotation by the CLI or another process is picked up within that time). The first key is
    made on first use."""

    def __init__(self, engine: sa.Engine, settings: Settings, refresh_seconds: float = 2.0) -> None:
        self.engine, self.settings, self.refresh_seconds = engine, settings, refresh_seconds
        self._lock = threading.Lock()
        self._loaded_at = -1e9
        self._signer: RSAKey | None = None
        self._public: list[dict[str, Any]] = []
        self._kids: tuple[str, ...] = ()

    def invalidate(self) -> None:
        self._loaded_at = -1e9

    def _load(self) -> None:
        now = time.monotonic()
        if now - self._loaded_at < self.refresh_seconds and self._signer is not None:
            return
        with self._lock:
            if now - self._loaded_at < self.refresh_seconds and self._signer is not None:
                return
            with self.engine.connect() as conn:
                live = _live(conn)
            if not live:
                rotate(self.engine, self.settings)
                with self.engine.connect() as conn:
                    live = _live(conn)
            kids = tuple(str(r.kid) for r in live)
            if kids != self._kids or self._signer is None:
                newest = live[0]
                pem = unseal(self.settings, str(newest.private_key), None) or ""
                self._signer = RSAKey.import_key(
                    pem, parameters={"kid": newest.kid, "use": "sig", "alg": ALGORITHM}
                )
                self._public = [dict(r.public_jwk) for r in live]
                self._kids = kids
            self._loaded_at = now

    def signer(self) -> RSAKey:
        self._load()
        if self._signer is None:
            raise RuntimeError("no signing key")
        return self._signer

    def jwks(self) -> dict[str, Any]:
        self._load()
        return {"keys": list(self._public)}

    def verifier(self) -> KeySet:
        return KeySet.import_key_set(self.jwks())  # type: ignore[arg-type]
