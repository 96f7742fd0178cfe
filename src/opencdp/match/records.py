"""Profiles as records to match: one row per live profile, its fields read from traits and
normalised so that comparisons see "Smith " and "smith" as the same name."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import jellyfish
import orjson
import pyarrow as pa
import sqlalchemy as sa

from opencdp.identity.identifiers import Identifier
from opencdp.match.config import Compare, MatchConfig
from opencdp.store.schema import profiles

PAGE = 20_000
_SPACES = re.compile(r"\s+")
_NOT_NAME = re.compile(r"[^a-z0-9' -]")
_NOT_TEXT = re.compile(r"[^a-z0-9 ]")
_DATE_PATTERNS = (
    (re.compile(r"^(\d{4})(\d{2})(\d{2})$"), (0, 1, 2)),  # 19151111
    (re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[T ].*)?$"), (0, 1, 2)),  # ISO, 1915/11/11
    (re.compile(r"^(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})$"), (2, 1, 0)),  # day first: 11/11/1915
)


def _fold(value: str) -> str:
    """Lower case without accents: "Zoë" and "zoe" are the same letters."""
    text = unicodedata.normalize("NFKD", value.strip().lower())
    return "".join(ch for ch in text if not unicodedata.combining(ch))


def _name(value: str) -> str:
    return _SPACES.sub(" ", _NOT_NAME.sub(" ", _fold(value))).strip()


def _text(value: str) -> str:
    return _SPACES.sub(" ", _NOT_TEXT.sub(" ", _fold(value))).strip()


def _short(value: str) -> str:
    return _SPACES.sub("", _fold(value))


#: Street-type abbreviations written out, so "12 Main St" and "12 Main Street" are the same street.
_STREET_WORDS = {
    "st": "street",
    "str": "street",
    "rd": "road",
    "ave": "avenue",
    "av": "avenue",
    "dr": "drive",
    "ln": "lane",
    "pl": "place",
    "ct": "court",
    "cres": "crescent",
    "cl": "close",
    "blvd": "boulevard",
    "hwy": "highway",
    "pde": "parade",
    "tce": "terrace",
    "sq": "square",
    "mt": "mount",
    "strasse": "strasse",
    "straße": "strasse",
}


def _address(value: str) -> str:
    words = _text(value).split()
    return " ".join(_STREET_WORDS.get(word, word) for word in words)


def _postcode(value: str) -> str:
    return _SPACES.sub("", value).upper()


def _date(value: str) -> str:
    """ISO `YYYY-MM-DD`. A date with a typo that no calendar has (month 13) keeps that form, so
    edit-distance levels still see it; anything else unreadable is dropped."""
    text = value.strip()
    for pattern, order in _DATE_PATTERNS:
        found = pattern.match(text)
        if found:
            parts = found.groups()
            y, m, d = (int(parts[i]) for i in order)
            if order[0] == 2 and m > 12 >= d:  # 12/31/1980: month first after all
                m, d = d, m
            return f"{y:04d}-{m:02d}-{d:02d}"
    return ""


def _email(value: str) -> str:
    local = _fold(value).partition("@")[0]
    return local.partition("+")[0].replace(".", "")


def _phone(value: str) -> str:
    digits = "".join(ch for ch in value if ch.isdigit())
    return digits[-9:] if len(digits) >= 6 else ""


NORMALISERS: dict[Compare, Callable[[str], str]] = {
    "name": _name,
    "text": _text,
    "address": _address,
    "short": _short,
    "postcode": _postcode,
    "exact": _short,
    "date": _date,
    "email": _email,
    "phone": _phone,
}


def phonetic_field(name: str) -> str:
    return f"{name}_phonetic"


def trait_value(traits: dict[str, Any], path: str) -> Any:
    """A trait by name, or by a dotted path into an object trait (`address.city`)."""
    if path in traits:
        return traits[path]
    current: Any = traits
    for part in path.split("."):
        if not isinstance(current, dict) or part not in current:
            return None
        current = current[part]
    return current


def _scalar(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return str(int(value)) if float(value).is_integer() else str(value)
    if isinstance(value, str):
        return value
    if isinstance(value, date):
        return value.isoformat()
    return None


@dataclass
class Records:
    """The records of one run: a table for Splink and what the run needs to act on a pair."""

    #: Splink's input: `unique_id` is the row number (integers keep the candidate pairs small)
    table: pa.Table
    #: row number -> profile id
    ids: list[str] = field(default_factory=list)
    #: profile id -> its anchor identifier (the merge event names the two anchors)
    anchors: dict[str, Identifier] = field(default_factory=dict)
    #: profile id -> identifiers per type (merge protection is checked before proposing)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    #: field -> share of profiles that have it
    coverage: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.table.num_rows)


def read_records(
    engine: sa.Engine, config: MatchConfig, progress: Callable[[int], None] | None = None
) -> Records:
    """Every live profile with its normalised fields, read page by page."""
    names = list(config.fields)
    specs = [config.fields[n] for n in names]
    normalisers = [NORMALISERS[s.compare] for s in specs]
    ids: list[str] = []
    columns: list[list[str | None]] = [[] for _ in names]
    anchors: dict[str, Identifier] = {}
    counts: dict[str, dict[str, int]] = {}
    # JSON as text, parsed here with orjson: several times faster than the column type's parsing
    as_text = [
        sa.cast(c, sa.Text) for c in (profiles.c.anchor, profiles.c.identity_counts, profiles.c.traits)
    ]
    query = (
        sa.select(profiles.c.id, *as_text)
        .where(profiles.c.merged_into.is_(None), profiles.c.id > sa.bindparam("after"))
        .order_by(profiles.c.id)
        .limit(PAGE)
    )
    after = ""
    with engine.connect() as conn:
        while True:
            rows = conn.execute(query, {"after": after}).all()
            if not rows:
                break
            for pid, anchor_text, counts_text, traits_text in rows:
                loaded = orjson.loads(traits_text) if traits_text else None
                traits = loaded if isinstance(loaded, dict) else {}
                anchor = orjson.loads(anchor_text)
                ids.append(pid)
                anchors[pid] = Identifier(str(anchor[2]), str(anchor[3]))
                counts[pid] = orjson.loads(counts_text) if counts_text else {}
                for column, spec, normalise in zip(columns, specs, normalisers, strict=True):
                    value = None
                    for path in spec.traits:
                        raw = _scalar(trait_value(traits, path))
                        if raw is not None and raw.strip():
                            value = normalise(raw) or None
                            if value is not None:
                                break
                    column.append(value)
            after = rows[-1][0]
            if progress is not None:
                progress(len(rows))
    # names also get a phonetic key (Metaphone: "Smyth" and "Smith" are SM0), for a comparison
    # level and blocking rules (`first_name_phonetic`)
    phonetic = {
        phonetic_field(name): pa.array(
            [[jellyfish.metaphone(v)] if v else None for v in column], pa.list_(pa.string())
        )
        for name, spec, column in zip(names, specs, columns, strict=True)
        if spec.compare == "name"
    }
    total = max(len(ids), 1)
    coverage = {n: sum(v is not None for v in col) / total for n, col in zip(names, columns, strict=True)}
    table = pa.table(
        {"unique_id": pa.array(range(len(ids)), pa.int64())}
        | {n: pa.array(col, pa.string()) for n, col in zip(names, columns, strict=True)}
        | phonetic
    )
    return Records(table, ids, anchors, counts, coverage)
