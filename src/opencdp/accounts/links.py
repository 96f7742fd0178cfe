"""Signed, expiring links for e-mail verification and password reset.

A link carries a JWT signed with the provider's signing key (joserfc; RS256, the same rotation
as ID tokens) naming its purpose, the account and an expiry; nothing is stored. A reset link
also carries the time the password last changed, so it works once: after the reset, that time
differs and the link is dead. A verification link names the address it verifies, so a link sent
before a change of address cannot verify the new one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from joserfc import jwt
from joserfc.errors import JoseError

from opencdp.accounts.keys import ALGORITHM, SigningKeys

VERIFY, RESET = "verify-email", "reset-password"


class BadLink(ValueError):
    """The link is expired, used, altered or not ours."""


@dataclass(frozen=True)
class LinkClaims:
    account_id: str
    email: str
    password_changed: int


def changed_stamp(moment: datetime) -> int:
    """The time the password changed, in microseconds: two changes within a second differ."""
    return round(moment.timestamp() * 1_000_000)


def make(
    keys: SigningKeys,
    issuer: str,
    purpose: str,
    account_id: str,
    email: str,
    password_changed_at: datetime,
    hours: int,
) -> str:
    now = int(time.time())
    signer = keys.signer()
    claims = {
        "iss": issuer,
        "aud": f"{issuer}#{purpose}",
        "sub": account_id,
        "email": email,
        "pwd": changed_stamp(password_changed_at),
        "iat": now,
        "exp": now + hours * 3600,
    }
    return jwt.encode({"alg": ALGORITHM, "kid": signer.kid}, claims, signer, algorithms=[ALGORITHM])


def read(keys: SigningKeys, issuer: str, purpose: str, token: str) -> LinkClaims:
    if not token or len(token) > 4000:
        raise BadLink("no link")
    try:
        decoded = jwt.decode(token, keys.verifier(), algorithms=[ALGORITHM])
        jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": f"{issuer}#{purpose}"},
            exp={"essential": True},
            sub={"essential": True},
        ).validate(decoded.claims)
    except (JoseError, ValueError) as exc:
        raise BadLink(str(exc)) from None
    claims = decoded.claims
    return LinkClaims(str(claims["sub"]), str(claims.get("email", "")), int(claims.get("pwd", 0)))
