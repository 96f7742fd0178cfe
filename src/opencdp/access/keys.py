"""Secrets are shown once and stored only as SHA-256 hashes; every change is audited.

Keys are 192-bit random tokens, so a fast hash is enough (no password KDF needed): a stolen
database does not reveal them, and lookup is one indexed equality on the hash.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from opencdp.access.audit import record
from opencdp.store.schema import api_keys, sources

#: What an API key may do. Each scope includes the ones after it: admin ⊇ export ⊇ read ⊇ metrics.
SCOPES = ("admin", "export", "read", "metrics")
#: A key's role is the widest scope it holds. Write keys belong to sources and only collect.
#: A `metrics` key may only scrape /metrics (counts and source names, never personal data).
#: A `decide` key is public (it is put into web pages): it holds none of the scopes, so `grants`
#: refuses it everywhere, and only `POST /v1/decide` accepts it, for decisions without trait values.
DECIDE_ROLE = "decide"
ROLES = (*SCOPES, DECIDE_ROLE)
WRITE_KEY_PREFIX = "wk_"
ADMIN_KEY_PREFIX = "ak_"
#: Public decide-only keys: recognisable at a glance as safe to put into a page.
PUBLIC_KEY_PREFIX = "pk_"


def grants(role: str, scope: str) -> bool:
    """Whether a key of `role` may use an endpoint that needs `scope` (unknown names grant nothing)."""
    return role in SCOPES and scope in SCOPES and SCOPES.index(role) <= SCOPES.index(scope)


class AccessError(ValueError):
    """A key or source operation that cannot be done; the message says why."""


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(24)


@dataclass(frozen=True)
class Source:
    id: int
    name: str
    enabled: bool
    created_at: datetime


@dataclass(frozen=True)
class ApiKey:
    id: int
    name: str
    role: str
    enabled: bool
    created_at: datetime

    @property
    def actor(self) -> str:
        """How the audit log names this key."""
        return f"key:{self.id}"


def create_source(engine: sa.Engine, name: str, *, actor: str = "system") -> tuple[Source, str]:
    name = name.strip()
    if not name:
        raise AccessError("a source needs a name")
    write_key = new_secret(WRITE_KEY_PREFIX)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        if conn.execute(sa.select(sources.c.id).where(sources.c.name == name)).first():
            raise AccessError(f"a source named {name!r} already exists")
        source_id = conn.execute(
            sources.insert().values(
                name=name, write_key_hash=hash_secret(write_key), enabled=True, created_at=now
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        record(conn, actor, "source.create", "source", name, {"id": source_id})
    return Source(source_id, name, True, now), write_key


def list_sources(engine: sa.Engine) -> list[Source]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(sources.c.id, sources.c.name, sources.c.enabled, sources.c.created_at).order_by(
                sources.c.id
            )
        )
        return [Source(*row) for row in rows]


def set_source_enabled(engine: sa.Engine, name: str, enabled: bool, *, actor: str = "system") -> None:
    with engine.begin() as conn:
        result = conn.execute(sources.update().where(sources.c.name == name).values(enabled=enabled))
        if result.rowcount == 0:
            raise AccessError(f"no source named {name!r}")
        record(conn, actor, "source.enable" if enabled else "source.disable", "source", name)


def rotate_write_key(engine: sa.Engine, name: str, *, actor: str = "system") -> str:
    """Give a source a new write key; the old one stops working (after the key cache's few seconds)."""
    write_key = new_secret(WRITE_KEY_PREFIX)
    with engine.begin() as conn:
        result = conn.execute(
            sources.update().where(sources.c.name == name).values(write_key_hash=hash_secret(write_key))
        )
        if result.rowcount == 0:
            raise AccessError(f"no source named {name!r}")
        record(conn, actor, "source.rotate_key", "source", name)
    return write_key


def create_api_key(
    engine: sa.Engine, role: str, name: str = "", *, actor: str = "system"
) -> tuple[ApiKey, str]:
    if role not in ROLES:
        raise AccessError(f"unknown role {role!r}; choose one of: {', '.join(ROLES)}")
    secret = new_secret(PUBLIC_KEY_PREFIX if role == DECIDE_ROLE else ADMIN_KEY_PREFIX)
    now = datetime.now(UTC)
    name = name or f"{role} key"
    with engine.begin() as conn:
        key_id = conn.execute(
            api_keys.insert().values(
                name=name, role=role, key_hash=hash_secret(secret), enabled=True, created_at=now
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        record(conn, actor, "key.create", "api_key", str(key_id), {"role": role})
    return ApiKey(key_id, name, role, True, now), secret


def list_api_keys(engine: sa.Engine) -> list[ApiKey]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                api_keys.c.id, api_keys.c.name, api_keys.c.role, api_keys.c.enabled, api_keys.c.created_at
            ).order_by(api_keys.c.id)
        )
        return [ApiKey(*row) for row in rows]


def set_api_key_enabled(engine: sa.Engine, key_id: int, enabled: bool, *, actor: str = "system") -> None:
    with engine.begin() as conn:
        result = conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(enabled=enabled))
        if result.rowcount == 0:
            raise AccessError(f"no API key with id {key_id}")
        record(conn, actor, "key.enable" if enabled else "key.disable", "api_key", str(key_id))


class KeyRing:
    """Resolves presented secrets to sources / API keys, with a short cache for the hot path.

    A disabled key stops working within `cache_seconds`; unknown keys are never cached as valid.
    """

    def __init__(self, engine: sa.Engine, cache_seconds: float = 2.0) -> None:
        self._engine = engine
        self._ttl = cache_seconds
        self._cache: dict[str, tuple[float, Source | ApiKey | None]] = {}
        self._lock = threading.Lock()

    def _cached(self, digest: str) -> tuple[bool, Source | ApiKey | None]:
        with self._lock:
            hit = self._cache.get(digest)
        if hit and hit[0] > time.monotonic():
            return True, hit[1]
        return False, None

    def _remember(self, digest: str, value: Source | ApiKey | None) -> None:
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (time.monotonic() + self._ttl, value)

    def source_for(self, write_key: str) -> Source | None:
        """The enabled source this write key belongs to, or None."""
        digest = hash_secret(write_key)
        hit, value = self._cached("s" + digest)
        if not hit:
            with self._engine.connect() as conn:
                row = conn.execute(
                    sa.select(
                        sources.c.id,
                        sources.c.name,
                        sources.c.enabled,
                        sources.c.created_at,
                        sources.c.write_key_hash,
                    ).where(sources.c.write_key_hash == digest)
                ).first()
            value = Source(*row[:4]) if row and hmac.compare_digest(row[4], digest) else None
            self._remember("s" + digest, value)
        return value if isinstance(value, Source) and value.enabled else None

    def api_key_for(self, secret: str) -> ApiKey | None:
        digest = hash_secret(secret)
        hit, value = self._cached("k" + digest)
        if not hit:
            with self._engine.connect() as conn:
                row = conn.execute(
                    sa.select(
                        api_keys.c.id,
                        api_keys.c.name,
                        api_keys.c.role,
                        api_keys.c.enabled,
                        api_keys.c.created_at,
                        api_keys.c.key_hash,
                    ).where(api_keys.c.key_hash == digest)
                ).first()
            value = ApiKey(*row[:5]) if row and hmac.compare_digest(row[5], digest) else None
            self._remember("k" + digest, value)
        return value if isinstance(value, ApiKey) and value.enabled else None
