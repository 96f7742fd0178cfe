"""What a social sign-in may give the CDP: claims by granted scope, traits, and the linking rule.

Pure functions over validated claims (`social.py` does the protocol), so the privacy rules can be
read and tested on their own:

- only the claims of the scopes the customer granted are kept (`shared_claims`); a provider that
  sends more (a hosted domain, a tenant id) does not get them into the profile;
- `email` and `phone` are *identifying* traits in opencdp: identity resolution merges profiles
  that share them. So they become traits only when the provider vouches for them and is trusted
  to (`linkable_email`, `_linkable_phone`); an unverified address is dropped, not renamed. Phase 1
  can still verify it itself (its verification e-mail) and write it from the account.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opencdp.accounts.social import SocialProvider

#: OpenID Connect Core §5.4: the standard claims each scope asks for.
SCOPE_CLAIMS: dict[str, frozenset[str]] = {
    "openid": frozenset({"sub"}),
    "profile": frozenset(
        {
            "name",
            "family_name",
            "given_name",
            "middle_name",
            "nickname",
            "preferred_username",
            "profile",
            "picture",
            "website",
            "gender",
            "birthdate",
            "zoneinfo",
            "locale",
            "updated_at",
        }
    ),
    "email": frozenset({"email", "email_verified"}),
    "address": frozenset({"address"}),
    "phone": frozenset({"phone_number", "phone_number_verified"}),
    # Apple's `name` scope; Apple sends the name once, as a `user` form field beside the code, which
    # is not a claim and not read here (see docs/identity.md)
    "name": frozenset({"name", "given_name", "family_name"}),
}

#: Claim → trait, in the names Segment's identify spec (and so opencdp's profiles) use.
CLAIM_TRAITS: dict[str, str] = {
    "name": "name",
    "given_name": "first_name",
    "family_name": "last_name",
    "middle_name": "middle_name",
    "nickname": "nickname",
    "preferred_username": "username",
    "picture": "avatar",
    "website": "website",
    "gender": "gender",
    "birthdate": "birthday",
    "locale": "locale",
    "zoneinfo": "timezone",
}
ADDRESS_FIELDS = {
    "street_address": "street",
    "locality": "city",
    "region": "state",
    "postal_code": "postal_code",
    "country": "country",
}


def shared_claims(claims: Mapping[str, Any], granted_scopes: Iterable[str]) -> dict[str, Any]:
    """The claims the customer agreed to share: those of the granted scopes, nothing else."""
    allowed: set[str] = set()
    for scope in granted_scopes:
        allowed |= SCOPE_CLAIMS.get(scope, frozenset())
    return {key: value for key, value in claims.items() if key in allowed}


def is_verified(claims: Mapping[str, Any], flag: str = "email_verified") -> bool:
    """True only for `true` (or Apple's string "true"); 1, "yes", a missing flag are not."""
    value = claims.get(flag)
    return value is True or value == "true"


def linkable_email(provider: SocialProvider, claims: Mapping[str, Any]) -> str | None:
    """The address by which this sign-in may be linked to an existing account (or profile), or None.

    The rule used for account linking: an external e-mail may link only if **the provider says
    `email_verified` is true AND the provider is configured as trusted for e-mail**
    (`SocialProvider.trusted_for_email`). Never otherwise: a claim without `email_verified`, with
    it false, or from a provider that lets users or tenant admins type any address (Microsoft's
    `email`, the "nOAuth" takeover) is a *forged-or-unverified* claim, and linking by it would hand
    the victim's account to whoever typed their address. `claims` must be validated claims
    (signature, issuer, audience checked) restricted to the granted scopes, so an address the
    customer did not agree to share never links either.
    """
    email = claims.get("email")
    if not provider.trusted_for_email or not is_verified(claims):
        return None
    if not isinstance(email, str) or email.count("@") != 1 or email.startswith("@") or email.endswith("@"):
        return None
    return email.strip().lower()


def _linkable_phone(provider: SocialProvider, claims: Mapping[str, Any]) -> str | None:
    phone = claims.get("phone_number")
    if provider.trusted_for_phone and is_verified(claims, "phone_number_verified") and isinstance(phone, str):
        return phone.strip() or None
    return None


def to_traits(provider: SocialProvider, claims: Mapping[str, Any]) -> dict[str, Any]:
    """Traits for an identify from source `social:<provider>`, from already *shared* claims."""
    traits = {CLAIM_TRAITS[k]: v for k, v in claims.items() if k in CLAIM_TRAITS and v not in (None, "")}
    address = claims.get("address")
    if isinstance(address, Mapping):
        mapped = {ADDRESS_FIELDS[k]: v for k, v in address.items() if k in ADDRESS_FIELDS and v}
        if mapped:
            traits["address"] = mapped
    email, phone = linkable_email(provider, claims), _linkable_phone(provider, claims)
    if email:
        traits["email"] = email
    if phone:
        traits["phone"] = phone
    return traits
