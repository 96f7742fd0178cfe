"""The mapping: how the columns of a CRM/offline file become Segment events.

A mapping is data (a TOML or JSON file, or the `mapping` object of the import API), validated in
two steps: pydantic checks the shape and names the field of every problem; `problems()` checks
what only the whole mapping can tell (key columns declared, one user_id column, …) so that an
error always points at the exact field, e.g. `columns.email.type` or `key[0]`.
"""

from __future__ import annotations

import codecs
import json
import tomllib
import zoneinfo
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ColumnType = Literal["string", "integer", "number", "boolean", "date", "datetime"]
Kind = Literal["contacts", "transactions"]
#: Identifier types that are top-level fields of a Segment message, not `context.externalIds`.
MESSAGE_IDENTIFIERS = {"user_id": "userId", "anonymous_id": "anonymousId"}
#: On contacts these identifiers are also written as the Segment reserved traits of the same name.
TRAIT_IDENTIFIERS = ("email", "phone")
DEFAULT_EVENT = "Order Completed"


class ImportFailed(Exception):
    """A fatal problem: the import stops (before any row when it is about the file or the mapping).

    The message is one line for the CLI; `problems` are (field, problem) pairs for the API, with
    fields relative to the mapping (e.g. `columns.email.type`)."""

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class MappingError(ImportFailed):
    """A mapping that cannot be used; every problem names its field."""

    def __init__(self, problems: list[tuple[str, str]], origin: str = "mapping") -> None:
        first = "; ".join(f"{field}: {problem}" if field else problem for field, problem in problems[:3])
        more = f" (and {len(problems) - 3} more problems)" if len(problems) > 3 else ""
        super().__init__(f"{origin}: {first}{more}", problems)


class ImportColumn(BaseModel):
    """One column of the file: its type, and whether it is an identifier, a trait or a property."""

    model_config = ConfigDict(extra="forbid")

    type: ColumnType = Field("string", description="How the value is parsed and validated")
    format: str | None = Field(
        None, description="strptime format for date/datetime columns (default: ISO-8601)", min_length=1
    )
    required: bool = Field(False, description="An empty value rejects the row (key columns always are)")
    identifier: str | None = Field(
        None,
        pattern=r"^[a-z][a-z0-9_]{0,63}$",
        description="user_id, anonymous_id, email, phone or a custom type such as crm_id; custom types "
        "and email/phone go to context.externalIds",
    )
    trait: str | bool | None = Field(
        None,
        description="Write the value as this trait (true: the column name, false: not at all). On "
        "transactions traits go to context.traits.",
    )
    property: str | bool | None = Field(
        None, description="Transactions only: write the value as this event property (default: column name)"
    )

    consent: str | None = Field(
        None,
        pattern=r"^[a-z][a-z0-9_]{0,63}$",
        description="A boolean column recording consent for this purpose (e.g. email_marketing)",
    )

    @field_validator("format")
    @classmethod
    def _strptime_format(cls, value: str | None) -> str | None:
        """Catch a bad format once, here, rather than as a rejection of every row."""
        if value is not None:
            sample = datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)
            try:
                datetime.strptime(sample.strftime(value), value)
            except ValueError as exc:
                raise ValueError(f"is not a usable strptime format ({exc})") from None
        return value

    @model_validator(mode="after")
    def _consent_is_boolean(self) -> ImportColumn:
        if self.consent is not None and self.type != "boolean":
            raise ValueError("a consent column must have type boolean (yes/no, true/false, 1/0)")
        return self

    @field_validator("trait", "property")
    @classmethod
    def _non_empty(cls, value: str | bool | None) -> str | bool | None:
        if isinstance(value, str) and not value.strip():
            raise ValueError("must be a non-empty name, true or false")
        return value


class ImportMapping(BaseModel):
    """What a file means: which kind of events its rows become and how each column is used."""

    model_config = ConfigDict(extra="forbid")

    kind: Kind = Field(..., description="contacts: one identify per row; transactions: one track per row")
    event: str | None = Field(
        None, min_length=1, max_length=200, description=f"Transactions: the event name ({DEFAULT_EVENT!r})"
    )
    key: list[str] = Field(
        ..., min_length=1, description="The column(s) whose values identify a row; re-imports skip it"
    )
    timestamp: str | None = Field(
        None, description="The date or datetime column that says when it happened (default: import time)"
    )
    consent_version: str | None = Field(
        None, max_length=100, description="Version of the consent text the file's consent columns refer to"
    )
    timezone: str = Field("UTC", description="Time zone of dates and of date-times without an offset")
    columns: dict[str, ImportColumn] = Field(
        ..., min_length=1, description="File column name → how it is used"
    )
    extra_columns: Literal["ignore", "include", "error"] = Field(
        "ignore",
        description="File columns the mapping does not name: ignore them, include them as string "
        "traits (contacts) / properties (transactions), or refuse the file",
    )
    delimiter: str = Field(",", min_length=1, max_length=1, description="CSV field separator")
    encoding: str = Field("utf-8-sig", description="File encoding (the default also accepts a BOM)")
    decimal_separator: Literal[".", ","] = Field(".", description="For number columns: 12.5 or 12,5")

    @field_validator("key", mode="before")
    @classmethod
    def _key_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("columns", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        """`email = "string"` is short for `[columns.email] type = "string"`."""
        if isinstance(value, dict):
            return {k: {"type": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as Europe/Berlin)"
            ) from None
        return value

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}") from None
        return value

    @property
    def event_name(self) -> str:
        return self.event or DEFAULT_EVENT

    def problems(self) -> list[tuple[str, str]]:
        """What is wrong with the mapping as a whole (every field is named); empty when usable."""
        out: list[tuple[str, str]] = []
        if self.kind == "contacts" and self.event is not None:
            out.append(("event", "only transactions have an event name"))
        for i, name in enumerate(self.key):
            if name not in self.columns:
                out.append((f"key[{i}]", f"column {name!r} is not declared in columns"))
        if len(set(self.key)) != len(self.key):
            out.append(("key", "names a column twice"))
        if self.timestamp is not None:
            spec = self.columns.get(self.timestamp)
            if spec is None:
                out.append(("timestamp", f"column {self.timestamp!r} is not declared in columns"))
            elif spec.type not in ("date", "datetime"):
                out.append(
                    (f"columns.{self.timestamp}.type", 'the timestamp column must be "date" or "datetime"')
                )
        seen_ids: dict[str, str] = {}
        for name, spec in self.columns.items():
            where = f"columns.{name}"
            if not name.strip():
                out.append((where, "a column name must not be empty"))
            if spec.format is not None and spec.type not in ("date", "datetime"):
                out.append((f"{where}.format", "only date and datetime columns take a format"))
            if spec.property is not None and self.kind == "contacts":
                out.append((f"{where}.property", "contacts have no properties; use trait"))
            if spec.identifier is not None:
                if spec.type not in ("string", "integer"):
                    out.append((f"{where}.type", "an identifier column must be string or integer"))
                if spec.identifier in MESSAGE_IDENTIFIERS and spec.identifier in seen_ids:
                    out.append(
                        (
                            f"{where}.identifier",
                            f"{spec.identifier} is already column {seen_ids[spec.identifier]!r}; "
                            "an event has one",
                        )
                    )
                seen_ids.setdefault(spec.identifier, name)
        if not seen_ids:
            out.append(("columns", "no column is an identifier; give one identifier = user_id, email, …"))
        targets: dict[tuple[str, str], str] = {}
        for name in self.columns:
            for place, target in (("trait", self.trait_of(name)), ("property", self.property_of(name))):
                if target is None:
                    continue
                other = targets.setdefault((place, target), name)
                if other != name:
                    out.append(
                        (f"columns.{name}.{place}", f"{place} {target!r} is also written by column {other!r}")
                    )
        return out

    def trait_of(self, name: str) -> str | None:
        """The trait a column is written to, or None. `trait = "x"` renames and `false` leaves out;
        by default contacts write every plain column (and email/phone) as a trait, transactions none."""
        spec = self.columns[name]
        if isinstance(spec.trait, str) or spec.trait is False:
            return spec.trait or None
        if spec.identifier is not None:
            if spec.trait is True:
                return spec.identifier
            contact_trait = self.kind == "contacts" and spec.identifier in TRAIT_IDENTIFIERS
            return spec.identifier if contact_trait else None
        if spec.trait is True:
            return name
        return name if self.kind == "contacts" and name != self.timestamp else None

    def property_of(self, name: str) -> str | None:
        """The event property a column is written to (transactions only), or None. By default every
        plain column is a property named after it; identifiers, the timestamp and traits are not."""
        spec = self.columns[name]
        if self.kind != "transactions" or spec.property is False:
            return None
        if isinstance(spec.property, str):
            return spec.property
        if spec.property is True:
            return name
        plain = spec.identifier is None and name != self.timestamp and spec.trait in (None, False)
        return name if plain else None


def _field(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_mapping(data: Any, origin: str = "mapping") -> ImportMapping:
    """Validate mapping data (a dict from TOML/JSON); raises MappingError naming every bad field."""
    try:
        mapping = ImportMapping.model_validate(data)
    except ValidationError as exc:
        raise MappingError(
            [(_field(e["loc"]), e["msg"].removeprefix("Value error, ")) for e in exc.errors()], origin
        ) from None
    problems = mapping.problems()
    if problems:
        raise MappingError(problems, origin)
    return mapping


def load_mapping(path: str | Path) -> ImportMapping:
    """Read a mapping from a .toml or .json file."""
    path = Path(path)
    origin = f"mapping {path.name}"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError([("", f"cannot read it: {exc.strerror or exc}")], origin) from None
    if path.suffix.lower() == ".toml":
        try:
            data: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise MappingError([("", f"is not valid TOML: {exc}")], origin) from None
    elif path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MappingError(
                [("", f"is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}")], origin
            ) from None
    else:
        raise MappingError([("", "must be a .toml or a .json file")], origin)
    return parse_mapping(data, origin)
