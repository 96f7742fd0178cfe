"""The claims a relying party receives (ID token and userinfo), by scope.

`sub` is the account id. `email` comes from the account (the address is a credential there);
every other claim is read from the customer's **profile** — the one identity resolution built
from the account's events, merged with whatever else the brand knows — so a name changed through
any source shows at the next sign-in, and accounts never keep a copy of profile data.

- openid: `sub` (the account id)
- email: `email`, `email_verified` (from the account)
- profile: `name`, `given_name`, `family_name`, `locale`, `updated_at` (traits `name`,
  `first_name`, `last_name`, `locale`; `name` falls back to first and last name)
- phone: `phone_number` (trait `phone`), `phone_number_verified` (false: opencdp never checks)
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from authlib.oauth2.rfc6749 import scope_to_list

from opencdp.accounts.store import Account
from opencdp.identity.identifiers import IdentityRules
from opencdp.profiles.reader import ProfileNotFound, resolve_profile_id
from opencdp.store.schema import identities, profiles


def profile_of(engine: sa.Engine, rules: IdentityRules, account_id: str) -> dict[str, Any] | None:
    """The account's profile row (traits, consent, updated_at), or None before it is processed."""
    ident = rules.normalise("user_id", account_id)
    if ident is None:
        return None
    with engine.connect() as conn:
        found = conn.execute(
            sa.select(identities.c.profile_id).where(
                identities.c.type == ident.type, identities.c.value == ident.value
            )
        ).scalar()
        if found is None:
            return None
        try:
            survivor = resolve_profile_id(conn, str(found))
        except ProfileNotFound:
            return None
        row = conn.execute(
            sa.select(profiles.c.id, profiles.c.traits, profiles.c.consent, profiles.c.updated_at).where(
                profiles.c.id == survivor
            )
        ).first()
    if row is None:
        return None
    return {
        "id": row.id,
        "traits": row.traits or {},
        "consent": row.consent or {},
        "updated_at": row.updated_at,
    }


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def claims_for(account: Account, scope: str, profile: dict[str, Any] | None) -> dict[str, Any]:
    scopes = set(scope_to_list(scope) or [])
    claims: dict[str, Any] = {"sub": account.id}
    if "email" in scopes and account.email:  # an account made by a social login may have none
        claims.update(email=account.email, email_verified=account.verified)
    traits = (profile or {}).get("traits", {})
    if "profile" in scopes:
        given, family = _text(traits.get("first_name")), _text(traits.get("last_name"))
        name = _text(traits.get("name")) or " ".join(p for p in (given, family) if p) or None
        for key, value in (
            ("name", name),
            ("given_name", given),
            ("family_name", family),
            ("locale", _text(traits.get("locale"))),
        ):
            if value:
                claims[key] = value
        if profile and profile.get("updated_at") is not None:
            claims["updated_at"] = int(profile["updated_at"].timestamp())
    if "phone" in scopes and (phone := _text(traits.get("phone"))):
        claims.update(phone_number=phone, phone_number_verified=False)
    return claims
