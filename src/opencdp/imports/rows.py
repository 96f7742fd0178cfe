"""Turning one row of a file into one event-log row, through the collector's own `normalise`.

Going through `normalise` means an imported row is an ordinary Segment event: identity resolution,
the profile timeline and `opencdp rebuild` treat it like any collected event. The messageId is
derived from the source, the mapping kind and the row's key, so importing a row again is a no-op.
"""

from __future__ import annotations

import difflib
import hashlib
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson

from opencdp import __version__
from opencdp.collect.messages import Envelope, InvalidMessage, Limits, iso, normalise
from opencdp.identity.identifiers import IdentityRules
from opencdp.imports.mapping import MESSAGE_IDENTIFIERS, ImportFailed, ImportMapping
from opencdp.imports.values import BadValue, as_json, is_empty, midnight, parse_value

LIBRARY = {"name": "opencdp-import", "version": __version__}


def message_id_for(source_name: str, kind: str, key_values: Sequence[Any]) -> str:
    """`import:` + sha256 of (source, kind, key values): the same row always gets the same id."""
    text = orjson.dumps([source_name, kind, *(as_json(v) for v in key_values)])
    return "import:" + hashlib.sha256(text).hexdigest()


@dataclass(frozen=True)
class Reject:
    """A row that was not imported: where it is (file line or API row index) and why."""

    position: int
    reason: str
    column: str | None = None


@dataclass(frozen=True)
class _Col:
    name: str
    type: str
    format: str | None
    required: bool
    identifier: str | None
    trait: str | None
    property: str | None
    consent: str | None = None


def check_columns(mapping: ImportMapping, present: Sequence[str], where: str) -> list[str]:
    """Fail before any row when the mapping names columns the input does not have; returns the
    input's columns that the mapping does not use (ignored, or included per `extra_columns`)."""
    problems, named = [], []
    for name in mapping.columns:
        if name not in present:
            close = difflib.get_close_matches(name, list(present), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append((f"columns.{name}", f"{name!r} is not a column of {where}{hint}"))
            named.append(f"{name!r}{hint}")
    if problems:
        found = ", ".join(repr(p) for p in present[:40]) or "none"
        raise ImportFailed(
            f"{where}: the mapping names column(s) it does not have: {', '.join(named)}; it has: {found}",
            problems,
        )
    extra = [name for name in present if name not in mapping.columns]
    if extra and mapping.extra_columns == "error":
        listed = ", ".join(map(repr, extra))
        raise ImportFailed(
            f"{where} has columns the mapping does not name: {listed} "
            '(map them, or set extra_columns = "ignore" or "include")',
            [("extra_columns", f"{where} has columns the mapping does not name: {listed}")],
        )
    return extra


class RowConverter:
    """Checks and converts rows one by one; remembers keys to reject a key repeated in the input."""

    def __init__(
        self,
        mapping: ImportMapping,
        present: Sequence[str],
        source_id: int,
        source_name: str,
        received_at: datetime,
        rules: IdentityRules,
        limits: Limits | None = None,
        where: str = "the file",
        position_label: str = "line",
        origin: dict[str, Any] | None = None,
    ) -> None:
        self.mapping = mapping
        self.source_id = source_id
        self.source_name = source_name
        self.rules = rules
        self.limits = limits or Limits()
        self.position_label = position_label
        self.origin = origin or {}
        self.zone = zoneinfo.ZoneInfo(mapping.timezone)
        self.envelope = Envelope(received_at=received_at)
        extra = check_columns(mapping, present, where)
        key = set(mapping.key) | ({mapping.timestamp} if mapping.timestamp else set())
        self.columns = [
            _Col(
                name,
                spec.type,
                spec.format,
                spec.required or name in key,
                spec.identifier,
                mapping.trait_of(name),
                mapping.property_of(name),
                spec.consent,
            )
            for name, spec in mapping.columns.items()
        ]
        self.ignored: list[str] = []
        used = {c.trait for c in self.columns} | {c.property for c in self.columns}
        for name in extra:
            if not name.strip():
                continue  # e.g. a trailing delimiter in the header: nothing to import or report
            if mapping.extra_columns != "include" or name in used:
                self.ignored.append(name)
                continue
            contacts = mapping.kind == "contacts"
            trait, prop = (name, None) if contacts else (None, name)
            self.columns.append(_Col(name, "string", None, False, None, trait, prop))
        self._seen: dict[bytes, int] = {}
        #: Message fields that `normalise` may complain about → the column they came from.
        self._field_columns = {
            MESSAGE_IDENTIFIERS[c.identifier]: c.name
            for c in self.columns
            if c.identifier in MESSAGE_IDENTIFIERS
        }

    def _typed(self, record: dict[str, Any], position: int) -> dict[str, Any] | Reject:
        values: dict[str, Any] = {}
        for col in self.columns:
            raw = record.get(col.name)
            if is_empty(raw):
                if col.required:
                    why = (
                        "part of the key"
                        if col.name in self.mapping.key
                        else "the timestamp"
                        if col.name == self.mapping.timestamp
                        else "declared required"
                    )
                    return Reject(position, f"column {col.name!r}: is empty ({why})", col.name)
                continue
            try:
                value = parse_value(raw, col.type, col.format, self.zone, self.mapping.decimal_separator)
            except BadValue as exc:
                return Reject(position, f"column {col.name!r}: {exc}", col.name)
            values[col.name] = value
        return values

    def convert(self, record: dict[str, Any], position: int) -> dict[str, Any] | Reject:
        """The event-log row for one input row, or why it is rejected."""
        values = self._typed(record, position)
        if isinstance(values, Reject):
            return values
        mapping = self.mapping
        message_id = message_id_for(self.source_name, mapping.kind, [values[k] for k in mapping.key])
        digest = bytes.fromhex(message_id[7:39])
        first = self._seen.get(digest)
        if first is not None:
            keys = ", ".join(f"{k}={as_json(values[k])!r}" for k in mapping.key)
            return Reject(position, f"duplicate key ({keys}): the same as {self.position_label} {first}")

        message: dict[str, Any] = {"messageId": message_id}
        external: list[dict[str, str]] = []
        traits: dict[str, Any] = {}
        properties: dict[str, Any] = {}
        consents: dict[str, Any] = {}
        usable: set[str] = set()
        for col in self.columns:
            if col.name not in values:
                continue
            value = values[col.name]
            if col.identifier is not None:
                text = str(value)
                ident = self.rules.normalise(col.identifier, text)
                if ident is not None:
                    usable.add(str(ident))
                if col.identifier in MESSAGE_IDENTIFIERS:
                    message[MESSAGE_IDENTIFIERS[col.identifier]] = text
                else:
                    external.append({"id": text, "type": col.identifier, "collection": "users"})
            if col.trait is not None:
                traits[col.trait] = as_json(value)
            if col.property is not None:
                properties[col.property] = as_json(value)
            if col.consent is not None and isinstance(value, bool):
                consents[col.consent] = {"granted": value, "version": mapping.consent_version}
        if not usable:
            given = [
                f"{c.name}={values[c.name]!r}" for c in self.columns if c.identifier and c.name in values
            ]
            detail = f" ({', '.join(given)} cannot link anyone: placeholder or malformed)" if given else ""
            return Reject(position, f"no usable identifier{detail}")
        if "userId" not in message and "anonymousId" not in message:
            # Segment needs userId or anonymousId; derived from the identifiers, it is the same for
            # every row of one person and links nobody else.
            message["anonymousId"] = (
                "import-" + hashlib.sha256("\n".join(sorted(usable)).encode()).hexdigest()[:32]
            )

        context: dict[str, Any] = {"library": LIBRARY}
        if self.origin:
            context["import"] = {**self.origin, self.position_label: position}
        if external:
            context["externalIds"] = external
        if consents:
            context["consent"] = {"purposes": consents}
        if mapping.kind == "contacts":
            message["type"] = "identify"
            message["traits"] = traits
        else:
            message["type"] = "track"
            message["event"] = mapping.event_name
            message["properties"] = properties
            if traits:
                context["traits"] = traits
        message["context"] = context
        if mapping.timestamp is not None:
            moment = values[mapping.timestamp]
            if not isinstance(moment, datetime) and isinstance(moment, date):
                moment = midnight(moment, self.zone)
            message["timestamp"] = iso(moment)
        try:
            row = normalise(message, self.envelope, self.source_id, self.limits)
        except InvalidMessage as exc:
            column = self._field_columns.get(exc.field)
            where = f"column {column!r}" if column else "the row" if exc.field == "body" else exc.field
            return Reject(position, f"{where}: {exc.problem}", column)
        self._seen[digest] = position
        return row
