"""Destinations as data: saved with a validated configuration and a sealed secret, listed and
shown without it, and turned into a working driver for the delivery worker."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from opencdp.activation.drivers import DestinationConfigError, Driver, driver_class
from opencdp.activation.secrets import seal, unseal
from opencdp.config import Settings
from opencdp.store.schema import (
    audience_sync_members,
    audience_syncs,
    consent_purposes,
    deliveries,
    destinations,
    forwarding_rules,
)

NAME_MAX = 200
#: the longest a delivery is retried before it becomes a dead letter, by default (Segment retries
#: for 4 hours, RudderStack for 3; a day covers a weekend-long outage of a small receiver less well
#: than 3 days, but keeps a dead receiver's backlog bounded)
DEFAULT_MAX_RETRY_SECONDS = 86400


class DestinationError(ValueError):
    """A destination request that cannot be done; `field` names the offending input."""

    def __init__(self, field: str, message: str, status: int = 422) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message, self.status = field, message, status


@dataclass(frozen=True)
class DestinationSpec:
    name: str
    kind: str
    config: dict[str, Any]
    secret: str | None = None
    purpose: str | None = None
    enabled: bool = True
    rate_per_second: float | None = None
    max_retry_seconds: int = DEFAULT_MAX_RETRY_SECONDS


def _check(conn: sa.Connection, spec: DestinationSpec) -> dict[str, Any]:
    name = spec.name.strip()
    if not name or len(name) > NAME_MAX:
        raise DestinationError("name", f"give a name of 1 to {NAME_MAX} characters")
    if not isinstance(spec.config, dict):
        raise DestinationError("config", "must be an object")
    try:
        config = driver_class(spec.kind).validate(dict(spec.config))
    except DestinationConfigError as exc:
        field = "kind" if exc.field == "kind" else f"config.{exc.field}"
        raise DestinationError(field, exc.message) from None
    if spec.purpose is not None:
        known = set(conn.execute(sa.select(consent_purposes.c.name)).scalars())
        if spec.purpose not in known:
            raise DestinationError(
                "purpose", f"unknown consent purpose {spec.purpose!r}; one of {', '.join(sorted(known))}"
            )
    if spec.rate_per_second is not None and not spec.rate_per_second > 0:
        raise DestinationError("rate_per_second", "must be above 0 (or left out for no limit)")
    if not 60 <= spec.max_retry_seconds <= 30 * 86400:
        raise DestinationError("max_retry_seconds", "must be between 60 and 2,592,000 (30 days)")
    return config


def create(conn: sa.Connection, settings: Settings, spec: DestinationSpec) -> int:
    config = _check(conn, spec)
    if conn.execute(sa.select(destinations.c.id).where(destinations.c.name == spec.name.strip())).first():
        raise DestinationError("name", f"a destination named {spec.name.strip()!r} exists", 409)
    secret, secret_env = _sealed(settings, spec.secret)
    now = datetime.now(UTC)
    return int(
        conn.execute(
            destinations.insert().values(
                name=spec.name.strip(),
                kind=spec.kind,
                config=config,
                secret=secret,
                secret_env=secret_env,
                purpose=spec.purpose,
                enabled=spec.enabled,
                rate_per_second=spec.rate_per_second,
                max_retry_seconds=spec.max_retry_seconds,
                created_at=now,
                updated_at=now,
                failures=0,
            )
        ).inserted_primary_key[0]  # type: ignore[index]
    )


def update(conn: sa.Connection, settings: Settings, destination_id: int, spec: DestinationSpec) -> None:
    """Replace a destination's definition; the secret is kept when `spec.secret` is None."""
    current = get_row(conn, destination_id)
    if spec.kind != current.kind:
        raise DestinationError("kind", "a destination's kind cannot change; create another one")
    config = _check(conn, spec)
    clash = conn.execute(
        sa.select(destinations.c.id).where(
            destinations.c.name == spec.name.strip(), destinations.c.id != destination_id
        )
    ).first()
    if clash:
        raise DestinationError("name", f"a destination named {spec.name.strip()!r} exists", 409)
    values: dict[str, Any] = {
        "name": spec.name.strip(),
        "config": config,
        "purpose": spec.purpose,
        "enabled": spec.enabled,
        "rate_per_second": spec.rate_per_second,
        "max_retry_seconds": spec.max_retry_seconds,
        "updated_at": datetime.now(UTC),
        # a changed definition gets a fresh chance: the circuit closes
        "failures": 0,
        "open_until": None,
    }
    if spec.secret is not None:
        values["secret"], values["secret_env"] = _sealed(settings, spec.secret)
    conn.execute(destinations.update().where(destinations.c.id == destination_id).values(**values))


def _sealed(settings: Settings, secret: str | None) -> tuple[str | None, str | None]:
    if not secret:
        return None, None
    try:
        return seal(settings, secret)
    except ValueError as exc:
        raise DestinationError("secret", str(exc)) from None


def delete(conn: sa.Connection, destination_id: int) -> dict[str, int]:
    """Remove a destination with what flows to it and its deliveries (sent or not)."""
    get_row(conn, destination_id)
    sync_ids = list(
        conn.execute(
            sa.select(audience_syncs.c.id).where(audience_syncs.c.destination_id == destination_id)
        ).scalars()
    )
    if sync_ids:
        conn.execute(audience_sync_members.delete().where(audience_sync_members.c.sync_id.in_(sync_ids)))
    counts = {
        "forwarding_rules": conn.execute(
            forwarding_rules.delete().where(forwarding_rules.c.destination_id == destination_id)
        ).rowcount,
        "audience_syncs": conn.execute(
            audience_syncs.delete().where(audience_syncs.c.destination_id == destination_id)
        ).rowcount,
        "deliveries": conn.execute(
            deliveries.delete().where(deliveries.c.destination_id == destination_id)
        ).rowcount,
    }
    conn.execute(destinations.delete().where(destinations.c.id == destination_id))
    return counts


def get_row(conn: sa.Connection, destination_id: int) -> sa.Row[Any]:
    row = conn.execute(sa.select(destinations).where(destinations.c.id == destination_id)).first()
    if row is None:
        raise DestinationError("destination", f"no destination with id {destination_id}", 404)
    return row


def find_id(conn: sa.Connection, name_or_id: str | int) -> int:
    """A destination by id or by name (CLI arguments may be either)."""
    text = str(name_or_id)
    if text.isdigit():
        row = conn.execute(sa.select(destinations.c.id).where(destinations.c.id == int(text))).first()
        if row:
            return int(row[0])
    row = conn.execute(sa.select(destinations.c.id).where(destinations.c.name == text)).first()
    if row is None:
        raise DestinationError("destination", f"no destination named {text!r}", 404)
    return int(row[0])


def view(row: sa.Row[Any], counts: dict[str, int] | None = None) -> dict[str, Any]:
    """A destination as shown to people: everything but the secret (only whether one is set)."""
    return {
        "id": row.id,
        "name": row.name,
        "kind": row.kind,
        "config": row.config,
        "has_secret": bool(row.secret or row.secret_env),
        "secret_env": row.secret_env,
        "purpose": row.purpose,
        "enabled": row.enabled,
        "rate_per_second": row.rate_per_second,
        "max_retry_seconds": row.max_retry_seconds,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
        "health": {
            "circuit": "open" if row.open_until else "closed",
            "open_until": row.open_until.isoformat() if row.open_until else None,
            "consecutive_failures": row.failures,
            "last_success_at": row.last_success_at.isoformat() if row.last_success_at else None,
            "last_error_at": row.last_error_at.isoformat() if row.last_error_at else None,
            "last_error": row.last_error,
        },
        "deliveries": counts or {},
    }


def status_counts(conn: sa.Connection) -> dict[int, dict[str, int]]:
    """Deliveries per destination and status (pending, sending, delivered, dead, skipped)."""
    found: dict[int, dict[str, int]] = {}
    for dest, status, n in conn.execute(
        sa.select(deliveries.c.destination_id, deliveries.c.status, sa.func.count()).group_by(
            deliveries.c.destination_id, deliveries.c.status
        )
    ):
        found.setdefault(dest, {})[status] = n
    return found


def list_views(conn: sa.Connection) -> list[dict[str, Any]]:
    counts = status_counts(conn)
    rows = conn.execute(sa.select(destinations).order_by(destinations.c.name)).all()
    return [view(r, counts.get(r.id, {})) for r in rows]


def make_driver(settings: Settings, row: sa.Row[Any]) -> Driver:
    """The destination's driver with its secret in clear (raises SecretMissing)."""
    cls = driver_class(row.kind)
    return cls(config=dict(row.config), secret=unseal(settings, row.secret, row.secret_env))
