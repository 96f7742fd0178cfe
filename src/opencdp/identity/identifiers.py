"""Pulling identifiers out of an event, normalising them, and the rules that protect merges.

Identifiers come from `userId`, `anonymousId`, `previousId` (alias), `context.device.id`,
`context.externalIds` and identifying traits (`email`, `phone`, and configured custom traits).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import phonenumbers

#: When an event carries several identifiers, the first of these types owns the event.
TYPE_PRIORITY = {"user_id": 0, "email": 1, "phone": 2, "anonymous_id": 8, "device_id": 9}
CUSTOM_PRIORITY = 5

DEFAULT_BLOCKED = frozenset(
    {
        "",
        "null",
        "none",
        "nil",
        "undefined",
        "unknown",
        "anonymous",
        "n/a",
        "na",
        "0",
        "-",
        "[object object]",
        "test@test.com",
        "test@example.com",
        "noemail@example.com",
        "none@none.com",
        "no@email.com",
        "email@example.com",
        "user@example.com",
    }
)


@dataclass(frozen=True, order=True)
class Identifier:
    type: str
    value: str

    def sort_key(self) -> tuple[int, str, str]:
        return (TYPE_PRIORITY.get(self.type, CUSTOM_PRIORITY), self.type, self.value)

    def __str__(self) -> str:
        return f"{self.type}:{self.value}"


@dataclass(frozen=True)
class IdentityRules:
    """Merge protection: at most `limits[type]` identifiers of a type per profile; blocked values
    never link anything. Configured with OPENCDP_IDENTITY_LIMITS ("user_id=1,email=5"),
    OPENCDP_BLOCKED_IDENTIFIERS (comma separated, added to the defaults) and
    OPENCDP_IDENTITY_TRAITS ("loyalty_card=loyalty_card,crm_id=crm_id": trait=identifier type)."""

    limits: dict[str, int] = field(default_factory=lambda: {"user_id": 1, "email": 5, "phone": 3})
    blocked: frozenset[str] = DEFAULT_BLOCKED
    trait_types: dict[str, str] = field(
        default_factory=lambda: {
            "email": "email",
            "phone": "phone",
            "loyalty_card": "loyalty_card",
            "crm_id": "crm_id",
        }
    )
    phone_region: str | None = None

    @classmethod
    def from_env(cls) -> IdentityRules:
        rules = cls()
        limits = dict(rules.limits)
        for part in filter(None, os.environ.get("OPENCDP_IDENTITY_LIMITS", "").split(",")):
            name, _, number = part.partition("=")
            if not number.strip().isdigit():
                raise ValueError(f"OPENCDP_IDENTITY_LIMITS: {part!r} is not TYPE=NUMBER")
            limits[name.strip()] = int(number)
        blocked = rules.blocked | {
            v.strip().lower()
            for v in os.environ.get("OPENCDP_BLOCKED_IDENTIFIERS", "").split(",")
            if v.strip()
        }
        trait_types = dict(rules.trait_types)
        for part in filter(None, os.environ.get("OPENCDP_IDENTITY_TRAITS", "").split(",")):
            trait, _, kind = part.partition("=")
            trait_types[trait.strip()] = (kind or trait).strip()
        region = os.environ.get("OPENCDP_DEFAULT_PHONE_REGION") or None
        return cls(limits, frozenset(blocked), trait_types, region)

    def normalise(self, kind: str, raw: Any) -> Identifier | None:
        """The canonical form, or None when the value must not be used to link anything."""
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            return None
        value = str(raw).strip()
        kind = kind.strip().lower()
        if kind == "email":
            value = value.lower()
            if value.count("@") != 1 or value.startswith("@") or value.endswith("@"):
                return None
        elif kind == "phone":
            value = self._phone(value)
        if not value or value.lower() in self.blocked or len(value) > 256 or not kind:
            return None
        return Identifier(kind, value)

    def _phone(self, value: str) -> str:
        try:
            parsed = phonenumbers.parse(value, self.phone_region)
            if phonenumbers.is_possible_number(parsed):
                return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        except phonenumbers.NumberParseException:
            pass
        digits = "".join(ch for ch in value if ch.isdigit())
        return ("+" + digits if value.startswith("+") else digits) if len(digits) >= 5 else ""

    def extract(self, payload: dict[str, Any]) -> list[Identifier]:
        """Every usable identifier in one event, strongest first (that one owns the event)."""
        found: set[Identifier] = set()

        def add(kind: str, raw: Any) -> None:
            ident = self.normalise(kind, raw)
            if ident is not None:
                found.add(ident)

        add("user_id", payload.get("userId"))
        add("anonymous_id", payload.get("anonymousId"))
        if payload.get("type") == "alias":
            add("anonymous_id", payload.get("previousId"))
        raw_context = payload.get("context")
        context: dict[str, Any] = raw_context if isinstance(raw_context, dict) else {}
        device = context.get("device")
        if isinstance(device, dict):
            add("device_id", device.get("id"))
        external = context.get("externalIds")
        if isinstance(external, list):
            for item in external:
                if isinstance(item, dict) and isinstance(item.get("type"), str):
                    add(item["type"], item.get("id"))
        if payload.get("type") != "group":  # group traits describe the company, not the person
            for traits in (payload.get("traits"), context.get("traits")):
                if isinstance(traits, dict):
                    for trait, kind in self.trait_types.items():
                        if trait in traits:
                            add(kind, traits[trait])
        return sorted(found, key=Identifier.sort_key)
