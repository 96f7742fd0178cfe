"""Settings, read once from environment variables so that every entry point agrees."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs


class ConfigError(ValueError):
    """A setting has a value we cannot use; the message names the variable."""


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None


def _niceness(name: str, default: int) -> int:
    value = _int(name, default)
    if not 0 <= value <= 19:
        raise ConfigError(f"{name} must be between 0 and 19, got {value}")
    return value


def _positive(name: str, default: int) -> int:
    value = _int(name, default)
    if value < 1:
        raise ConfigError(f"{name} must be at least 1, got {value}")
    return value


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value < 86400:
        raise ConfigError(f"{name} must be a number of seconds above 0, got {raw!r}")
    return value


def session_gap_from_env() -> int:
    """`OPENCDP_SESSION_GAP_MINUTES` on its own, for code that is not handed the settings (the
    session computed traits, refreshed by the processor): the same variable, so they agree."""
    return _positive("OPENCDP_SESSION_GAP_MINUTES", 30)


def _origins(name: str) -> tuple[str, ...]:
    """`*` (the default) or a comma-separated list of origins, without trailing slashes."""
    raw = os.environ.get(name)
    origins: list[str] = []
    for part in (raw or "").split(","):
        origin = part.strip().rstrip("/")
        if origin and origin != "*" and not origin.startswith(("http://", "https://")):
            raise ConfigError(f"{name}: {origin!r} is not an origin such as https://shop.example (or *)")
        if origin:
            origins.append(origin)
    return ("*",) if "*" in origins or not origins else tuple(origins)


#: what the preference centre offers to tick unless OPENCDP_PREFERENCE_INTERESTS says otherwise
DEFAULT_PREFERENCE_INTERESTS = ("news", "offers", "new_products", "events")


def _names(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated list of short names (letters, digits, _ and -), in the order given."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    names = tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    for item in names:
        if len(item) > 64 or not item.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"{name}: {item!r} is not a name (letters, digits, _ and -, at most 64)")
    return names


def _public_url(name: str) -> str | None:
    raw = (os.environ.get(name) or "").strip().rstrip("/")
    if raw and not raw.startswith(("http://", "https://")):
        raise ConfigError(f"{name} must be an address such as https://cdp.shop.example, got {raw!r}")
    return raw or None


@dataclass(frozen=True)
class Settings:
    """Every knob opencdp has. Documented in the README's configuration table."""

    data_dir: Path
    database_url: str
    log_level: str = "INFO"
    log_format: str = "console"  # or "json"
    host: str = "127.0.0.1"
    port: int = 8000
    # SQLite durability: FULL fsyncs the WAL on every commit (survives power loss);
    # NORMAL survives a killed process but not a power cut.
    sqlite_synchronous: str = "FULL"
    key_cache_seconds: int = 2
    max_event_bytes: int = 32 * 1024
    max_batch_bytes: int = 500 * 1024
    max_nesting_depth: int = 32
    body_timeout_seconds: float = 10.0  # a request body must arrive whole within this
    process_in_server: bool = True
    #: SQLite, `serve` with its processor child: the collector commits to the log's intake, a
    #: file of its own, so that acknowledging never waits for processing (log/intake.py)
    intake: bool = True
    #: the processor child's niceness (0-19): when collection and processing both want the cores,
    #: the server's answers go first; processing catches up when they are free
    processor_niceness: int = 5
    #: `serve` also sends what the outbox holds (OPENCDP_DELIVER_IN_SERVER=0 leaves it to `worker`)
    deliver_in_server: bool = True
    #: events per processing transaction: larger chunks amortise per-chunk work (derived state,
    #: commit) but hold SQLite's write lock longer
    process_chunk_size: int = 1000
    #: SQLite: the longest a processing chunk may hold the write lock that collection needs too
    process_max_hold_seconds: float = 0.3
    refresh_seconds: int = 3600
    #: /api/health reports "degraded" when the oldest unprocessed event waited longer than this
    health_max_lag_seconds: int = 60
    #: GET /metrics without a key (for a scraper on a private network); otherwise it needs an API
    #: key with the `metrics` scope (every role has it)
    metrics_public: bool = False
    #: a delivery claimed by a worker that died is sent again after this long (same idempotency key)
    delivery_lease_seconds: float = 60.0
    #: delivered and skipped deliveries are kept this long (status pages, de-duplication), then deleted
    delivery_retention_days: int = 7
    #: a visitor's session ends after this many minutes without an event (Google Analytics' default)
    session_gap_minutes: int = 30
    #: origins whose pages may call /v1 (collection, analytics.js settings, decide): "*" or a list
    cors_origins: tuple[str, ...] = ("*",)
    #: the interests a customer can tick in the preference centre (OPENCDP_PREFERENCE_INTERESTS)
    preference_interests: tuple[str, ...] = DEFAULT_PREFERENCE_INTERESTS
    #: the address customers reach this server at (links in e-mails, e.g. to the preference
    #: centre); without it the API uses the address the request came to
    public_url: str | None = None

    @classmethod
    def from_env(cls) -> Settings:
        data_dir = Path(os.environ.get("OPENCDP_DATA_DIR") or platformdirs.user_data_dir("opencdp"))
        url = os.environ.get("OPENCDP_DATABASE_URL") or f"sqlite:///{data_dir / 'opencdp.db'}"
        sync = os.environ.get("OPENCDP_SQLITE_SYNCHRONOUS", "FULL").upper()
        if sync not in {"FULL", "NORMAL", "EXTRA"}:
            raise ConfigError(f"OPENCDP_SQLITE_SYNCHRONOUS must be FULL, NORMAL or EXTRA, got {sync!r}")
        log_format = os.environ.get("OPENCDP_LOG_FORMAT", "console").lower()
        if log_format not in {"console", "json"}:
            raise ConfigError(f"OPENCDP_LOG_FORMAT must be console or json, got {log_format!r}")
        return cls(
            data_dir=data_dir,
            database_url=url,
            log_level=os.environ.get("OPENCDP_LOG_LEVEL", "INFO").upper(),
            log_format=log_format,
            host=os.environ.get("OPENCDP_HOST", "127.0.0.1"),
            port=_int("OPENCDP_PORT", 8000),
            sqlite_synchronous=sync,
            key_cache_seconds=_int("OPENCDP_KEY_CACHE_SECONDS", 2),
            max_event_bytes=_int("OPENCDP_MAX_EVENT_BYTES", 32 * 1024),
            max_batch_bytes=_int("OPENCDP_MAX_BATCH_BYTES", 500 * 1024),
            max_nesting_depth=_int("OPENCDP_MAX_NESTING_DEPTH", 32),
            body_timeout_seconds=_seconds("OPENCDP_BODY_TIMEOUT_SECONDS", 10.0),
            refresh_seconds=_int("OPENCDP_REFRESH_SECONDS", 3600),
            health_max_lag_seconds=_int("OPENCDP_HEALTH_MAX_LAG_SECONDS", 60),
            process_in_server=os.environ.get("OPENCDP_PROCESS_IN_SERVER", "1").lower()
            not in {"0", "false", "no"},
            intake=os.environ.get("OPENCDP_INTAKE", "1").lower() not in {"0", "false", "no"},
            processor_niceness=_niceness("OPENCDP_PROCESSOR_NICENESS", 5),
            deliver_in_server=os.environ.get("OPENCDP_DELIVER_IN_SERVER", "1").lower()
            not in {"0", "false", "no"},
            process_chunk_size=_positive("OPENCDP_PROCESS_CHUNK_SIZE", 1000),
            process_max_hold_seconds=_seconds("OPENCDP_PROCESS_MAX_HOLD_SECONDS", 0.3),
            metrics_public=os.environ.get("OPENCDP_METRICS_PUBLIC", "0").lower() in {"1", "true", "yes"},
            delivery_lease_seconds=_seconds("OPENCDP_DELIVERY_LEASE_SECONDS", 60.0),
            delivery_retention_days=_positive("OPENCDP_DELIVERY_RETENTION_DAYS", 7),
            session_gap_minutes=session_gap_from_env(),
            cors_origins=_origins("OPENCDP_CORS_ORIGINS"),
            preference_interests=_names("OPENCDP_PREFERENCE_INTERESTS", DEFAULT_PREFERENCE_INTERESTS),
            public_url=_public_url("OPENCDP_PUBLIC_URL"),
        )

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
