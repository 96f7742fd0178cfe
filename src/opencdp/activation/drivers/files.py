"""Files in a folder: the "daily drop" that a CRM, an e-mail tool or a warehouse job picks up.

Deliveries wait and go together once per `every_seconds`; each batch becomes one CSV or JSON Lines
file. The file appears whole or not at all: it is written under a temporary dot-name in the same
folder, flushed to disk, then linked to its final name, which never replaces an existing file (a
second batch in the same second gets `-2`). Every row carries the delivery's idempotency key, so a
consumer can drop rows that a retry wrote again.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import secrets
from collections.abc import Iterable
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from opencdp.activation.drivers.base import DestinationConfigError, Driver, Message, Outcome
from opencdp.activation.templates import TemplateProblem, check, render_text, render_value
from opencdp.csvsafe import line

FORMATS = ("csv", "jsonl")
KEY_COLUMN = "idempotency_key"
DEFAULT_FILE_NAME = "opencdp-{{ destination.name }}-{{ now }}.{{ format }}"
#: good for both kinds of message: event fields stay empty on audience rows and the other way round
DEFAULT_COLUMNS = {
    "kind": "{{ kind }}",
    "profile_id": "{{ profile.id }}",
    "email": "{{ profile.traits.email }}",
    "action": "{{ action }}",
    "segment_id": "{{ segment.id }}",
    "segment_name": "{{ segment.name }}",
    "event_type": "{{ event.type }}",
    "event": "{{ event.event }}",
    "timestamp": "{{ event.timestamp }}",
}
DEFAULTS: dict[str, Any] = {
    "format": "csv",
    "file_name": DEFAULT_FILE_NAME,
    "columns": None,
    "every_seconds": 86400,
    "batch_size": 50_000,
}
KNOWN = {*DEFAULTS, "folder"}
#: top-level names a message may lack (an event has no segment): blank, so `segment.id` is empty
_BLANK: dict[str, Any] = {
    "kind": None,
    "event": {},
    "profile": {},
    "action": None,
    "segment": {},
    "destination": {},
}
#: separators, control characters and what Windows shares refuse
_UNSAFE_NAME = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]+')
#: link() is not offered here (FAT, some network shares): fall back to a checked rename
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.ENOSYS}


class Now(str):
    """The batch's time as compact UTC text (`20261201T093000Z`); `now.strftime("%Y-%m-%d")`
    gives any other form in a template."""

    moment: datetime

    def __new__(cls, moment: datetime) -> Now:
        text = super().__new__(cls, moment.strftime("%Y%m%dT%H%M%SZ"))
        text.moment = moment
        return text

    def strftime(self, pattern: str) -> str:
        return self.moment.strftime(pattern)


def _number(config: dict[str, Any], key: str, low: int, high: int) -> None:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise DestinationConfigError(key, f"a number from {low} to {high}")


class FileDriver(Driver):
    kind = "file"

    @classmethod
    def validate(cls, config: dict[str, Any]) -> dict[str, Any]:
        for key in config:
            if key not in KNOWN:
                raise DestinationConfigError(key, f"unknown setting; known: {', '.join(sorted(KNOWN))}")
        out = {**DEFAULTS, **{k: v for k, v in config.items() if v is not None}}
        folder = out.get("folder")
        if not isinstance(folder, str) or not folder.strip() or "\x00" in folder:
            raise DestinationConfigError("folder", "required: the absolute path of a folder")
        if not os.path.isabs(folder):
            raise DestinationConfigError("folder", f"an absolute path (from /), not {folder!r}")
        out["folder"] = os.path.normpath(folder)
        if not isinstance(out["format"], str) or out["format"] not in FORMATS:
            raise DestinationConfigError("format", f"one of {', '.join(FORMATS)}")
        if not isinstance(out["file_name"], str) or not out["file_name"].strip():
            raise DestinationConfigError("file_name", "a text template")
        try:
            check(out["file_name"])
        except TemplateProblem as exc:
            raise DestinationConfigError("file_name", str(exc)) from exc
        if out["columns"] is None and out["format"] == "csv":
            out["columns"] = dict(DEFAULT_COLUMNS)
        if out["columns"] is not None:
            cls._check_columns(out["columns"])
        _number(out, "every_seconds", 60, 31 * 86400)
        _number(out, "batch_size", 1, 1_000_000)
        out["batch_size"] = int(out["batch_size"])
        return out

    @staticmethod
    def _check_columns(columns: Any) -> None:
        if not isinstance(columns, dict) or not columns:
            raise DestinationConfigError("columns", "an object of column name → value template")
        for name, template in columns.items():
            if not isinstance(name, str) or not name.strip():
                raise DestinationConfigError("columns", "column names must be non-empty texts")
            if name == KEY_COLUMN:
                raise DestinationConfigError(f"columns.{name}", "always written first: leave it out")
            try:
                check(template)
            except TemplateProblem as exc:
                raise DestinationConfigError(f"columns.{name}", str(exc)) from exc

    def batch_size(self) -> int:
        return int(self.config["batch_size"])

    def every_seconds(self) -> float | None:
        return float(self.config["every_seconds"])

    async def send(self, messages: list[Message]) -> list[Outcome]:
        if not messages:
            return []
        # rendering and writing tens of thousands of rows would stall the worker's event loop
        return await asyncio.to_thread(self.write, messages, datetime.now(UTC))

    def write(self, messages: list[Message], moment: datetime) -> list[Outcome]:
        """Render every message and write the one file; the outcomes, in order."""
        now = Now(moment)
        outcomes: list[Outcome | None] = [None] * len(messages)
        rows: list[str] = []
        for i, message in enumerate(messages):
            try:
                rows.append(self._row(message, now))
            except TemplateProblem as exc:
                outcomes[i] = Outcome.fail(f"template error: {exc}")
            except TypeError as exc:  # a value JSON cannot hold
                outcomes[i] = Outcome.fail(f"cannot write the row: {exc}")
        if rows:
            whole = self._write_file(messages[0], now, rows)
            outcomes = [o if o is not None else whole for o in outcomes]
        return [o if o is not None else Outcome.ok() for o in outcomes]

    def _context(self, message: Message, now: Now) -> dict[str, Any]:
        return {**_BLANK, **message.context, "now": now}

    def _row(self, message: Message, now: Now) -> str:
        columns: dict[str, Any] | None = self.config["columns"]
        if self.config["format"] == "csv":
            context = self._context(message, now)
            columns = columns or DEFAULT_COLUMNS  # validate() has filled them in already
            return line([message.key, *(render_value(t, context) for t in columns.values())])
        record: dict[str, Any] = {KEY_COLUMN: message.key}
        if columns is None:
            record.update((k, v) for k, v in message.body.items() if k != KEY_COLUMN)
        else:
            context = self._context(message, now)
            record.update((name, render_value(t, context)) for name, t in columns.items())
        return orjson.dumps(record, option=orjson.OPT_NON_STR_KEYS).decode() + "\n"

    def _write_file(self, first: Message, now: Now, rows: list[str]) -> Outcome:
        """One outcome for every rendered row: they are in the file together or not at all."""
        fmt = self.config["format"]
        context = {"destination": first.context.get("destination", {}), "now": now, "format": fmt}
        try:
            name = safe_file_name(render_text(self.config["file_name"], context), fmt, now)
        except TemplateProblem as exc:
            return Outcome.fail(f"file_name template error: {exc}")
        if fmt == "csv":
            rows.insert(0, line([KEY_COLUMN, *(self.config["columns"] or DEFAULT_COLUMNS)]))
        folder = Path(self.config["folder"])
        try:
            write_atomically(folder, name, rows)
        except OSError as exc:  # not writable, disk full, folder missing and not creatable
            return Outcome.again(f"cannot write a file in {folder}: {type(exc).__name__}: {exc}")
        return Outcome.ok()


def safe_file_name(name: str, fmt: str, now: Now) -> str:
    """A plain file name in the folder: no separators, no hidden or temporary name, the format's
    extension (so a file destination cannot be made to write, say, `authorized_keys`)."""
    name = _UNSAFE_NAME.sub("_", name).strip().lstrip(".").strip()[:200]
    if not name:
        name = f"opencdp-{now}"
    if not name.lower().endswith(f".{fmt}"):
        name = f"{name}.{fmt}"
    return name


def write_atomically(folder: Path, name: str, chunks: Iterable[str]) -> Path:
    """Write under a temporary dot-name, fsync, then give it a final name that no file has yet."""
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{name}.{secrets.token_hex(6)}.tmp"
    # O_EXCL with 0o666: a new file, with the permissions the process's umask gives any file
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            out.writelines(chunks)
            out.flush()
            os.fsync(out.fileno())
        target = _publish(temporary, folder, name)
    except BaseException:
        with suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_folder(folder)
    return target


def _publish(temporary: Path, folder: Path, name: str) -> Path:
    stem, dot, extension = name.rpartition(".")
    for n in range(1, 10_000):
        target = folder / (name if n == 1 else f"{stem}-{n}{dot}{extension}")
        try:
            os.link(temporary, target)  # atomic, and refuses to replace an existing file
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in _NO_LINKS:
                raise
            if target.exists():
                continue
            os.replace(temporary, target)
            return target
        with suppress(OSError):
            os.unlink(temporary)
        return target
    raise FileExistsError(errno.EEXIST, "no free file name", str(folder / name))


def _fsync_folder(folder: Path) -> None:
    """Make the new name itself durable (POSIX); where folders cannot be opened, skip it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
