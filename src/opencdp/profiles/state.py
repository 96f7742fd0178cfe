"""A profile's derived state and how one event changes it.

Every rule here is order-independent, so live processing, late events and a rebuild agree:
a trait keeps the value of the event with the latest (timestamp, message id) — event time, not
arrival time; counters add; first/last seen are min/max.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opencdp.privacy.consent import extract_consent

#: (ISO timestamp, message id, source id): which of two writes of a trait is newer.
TraitStamp = tuple[str, str, int]


@dataclass
class ProfileState:
    traits: dict[str, Any] = field(default_factory=dict)
    #: per trait: [timestamp, message_id, source_id, source name]
    trait_meta: dict[str, list[Any]] = field(default_factory=dict)
    event_counts: dict[str, int] = field(default_factory=dict)
    first_seen: str | None = None
    last_seen: str | None = None
    #: per purpose: [granted, timestamp, message_id, source_id, source name, text version]
    consent: dict[str, list[Any]] = field(default_factory=dict)

    def apply(
        self, payload: dict[str, Any], timestamp: str, message_id: str, source_id: int, source: str
    ) -> None:
        kind = payload.get("type", "")
        self.event_counts[kind] = self.event_counts.get(kind, 0) + 1
        if self.first_seen is None or timestamp < self.first_seen:
            self.first_seen = timestamp
        if self.last_seen is None or timestamp > self.last_seen:
            self.last_seen = timestamp
        for change in extract_consent(payload):
            current = self.consent.get(change.purpose)
            if current is None or (timestamp, message_id, source_id) > tuple(current[1:4]):
                self.consent[change.purpose] = [
                    change.granted,
                    timestamp,
                    message_id,
                    source_id,
                    source,
                    change.version,
                ]
        if kind == "group":
            return  # group traits describe the account, not the person
        stamp = [timestamp, message_id, source_id, source]
        context = payload.get("context")
        for traits in (context.get("traits") if isinstance(context, dict) else None, payload.get("traits")):
            if not isinstance(traits, dict):
                continue
            for name, value in traits.items():
                current = self.trait_meta.get(name)
                if current is None or tuple(stamp[:3]) > tuple(current[:3]):
                    self.traits[name] = value
                    self.trait_meta[name] = stamp

    def absorb(self, other: ProfileState) -> None:
        """Merge another profile's state into this one (identity merge)."""
        for name, meta in other.trait_meta.items():
            current = self.trait_meta.get(name)
            if current is None or tuple(meta[:3]) > tuple(current[:3]):
                self.traits[name] = other.traits[name]
                self.trait_meta[name] = meta
        for purpose, record in other.consent.items():
            current = self.consent.get(purpose)
            if current is None or tuple(record[1:4]) > tuple(current[1:4]):
                self.consent[purpose] = record
        for kind, n in other.event_counts.items():
            self.event_counts[kind] = self.event_counts.get(kind, 0) + n
        for value in (other.first_seen,):
            if value is not None and (self.first_seen is None or value < self.first_seen):
                self.first_seen = value
        if other.last_seen is not None and (self.last_seen is None or other.last_seen > self.last_seen):
            self.last_seen = other.last_seen
