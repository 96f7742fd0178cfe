"""Which social logins the hosted pages offer, read from the environment like the other account
settings (docs/identity.md, "Social login"):

    OPENCDP_ACCOUNTS_SOCIAL=google,acme
    OPENCDP_ACCOUNTS_SOCIAL_GOOGLE_CLIENT_ID=…  OPENCDP_ACCOUNTS_SOCIAL_GOOGLE_CLIENT_SECRET=…
    OPENCDP_ACCOUNTS_SOCIAL_ACME_ISSUER=https://id.acme.example  (…_CLIENT_ID, …_CLIENT_SECRET)

A name that is a preset of `social.preset()` takes its issuer and trust from there; any other
name needs `_ISSUER`. Optional per provider: `_PRESET` (a preset under another name), `_TENANT`
(Microsoft), `_SCOPES`, `_LABEL` (the button's text), `_TRUSTED_FOR_EMAIL` and
`_TRUSTED_FOR_PHONE` (`1`/`0`: override the preset's trust). The secret stays in the environment
(or the operator's secret store behind it): it is never written to the database.
"""

from __future__ import annotations

import os
from typing import Any

from opencdp.accounts.social import PRESETS, SocialProvider, preset
from opencdp.config import ConfigError

LABELS = {"google": "Google", "microsoft": "Microsoft", "apple": "Apple", "facebook": "Facebook"}
_FLAGS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def _flag(name: str) -> bool | None:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return None
    if raw not in _FLAGS:
        raise ConfigError(f"{name} must be 1 or 0, got {raw!r}")
    return _FLAGS[raw]


def provider_from_env(name: str) -> SocialProvider:
    prefix = "OPENCDP_ACCOUNTS_SOCIAL_" + name.upper().replace("-", "_") + "_"

    def env(key: str) -> str:
        return os.environ.get(prefix + key, "").strip()

    client_id = env("CLIENT_ID")
    if not client_id:
        raise ConfigError(f"social login {name!r}: set {prefix}CLIENT_ID")
    overrides: dict[str, Any] = {"name": name}
    if env("SCOPES"):
        overrides["scopes"] = tuple(env("SCOPES").replace(",", " ").split())
    for key in ("trusted_for_email", "trusted_for_phone"):
        flag = _flag(prefix + key.upper())
        if flag is not None:
            overrides[key] = flag
    if env("ISSUER"):
        overrides["issuer"] = env("ISSUER").rstrip("/")
    kind = env("PRESET") or (name if name in PRESETS else "")
    try:
        if kind:
            if env("TENANT"):
                overrides["tenant"] = env("TENANT")
            return preset(kind, client_id, env("CLIENT_SECRET") or None, **overrides)
        if "issuer" not in overrides:
            raise ConfigError(
                f"social login {name!r} is no preset ({', '.join(sorted(PRESETS))}): set {prefix}ISSUER"
            )
        return SocialProvider(client_id=client_id, client_secret=env("CLIENT_SECRET") or None, **overrides)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def social_from_env() -> tuple[tuple[SocialProvider, ...], dict[str, str]]:
    """The configured providers, in the order of OPENCDP_ACCOUNTS_SOCIAL, and their button labels."""
    names = [n.strip().lower() for n in os.environ.get("OPENCDP_ACCOUNTS_SOCIAL", "").split(",") if n.strip()]
    if len(set(names)) != len(names):
        raise ConfigError("OPENCDP_ACCOUNTS_SOCIAL names a provider twice")
    providers = tuple(provider_from_env(name) for name in names)
    labels = {}
    for p in providers:
        own = os.environ.get("OPENCDP_ACCOUNTS_SOCIAL_" + p.name.upper().replace("-", "_") + "_LABEL", "")
        labels[p.name] = own.strip() or LABELS.get(p.name) or p.name.capitalize()
    return providers, labels
