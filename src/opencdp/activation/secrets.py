"""Destination secrets (passwords, API tokens, signing keys), never stored in clear.

A secret is either encrypted with the installation's key (Fernet: AES-128-CBC with an HMAC) or
given as the name of an environment variable that holds it (`env:HUBSPOT_TOKEN`), so that an
operator can keep it in their own secret store. The key is `OPENCDP_SECRET_KEY` when set (needed
when workers run on several machines) or a key file created once in the data folder, readable by
its owner only. Secrets are never shown again after they are saved.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from opencdp.config import ConfigError, Settings

KEY_FILE = "secret.key"
ENV_PREFIX = "env:"


class SecretMissing(RuntimeError):
    """A destination's secret cannot be read (its environment variable is unset, the key changed)."""


def _key(settings: Settings) -> bytes:
    raw = os.environ.get("OPENCDP_SECRET_KEY")
    if raw:
        try:
            Fernet(raw.encode())
        except ValueError:
            raise ConfigError(
                "OPENCDP_SECRET_KEY must be 32 url-safe base64-encoded bytes "
                "(python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')"
            ) from None
        return raw.encode()
    path = Path(settings.data_dir) / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = Fernet.generate_key()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            return path.read_bytes().strip()
        with os.fdopen(fd, "wb") as out:
            out.write(key)
        return key
    return path.read_bytes().strip()


def seal(settings: Settings, secret: str) -> tuple[str | None, str | None]:
    """What to store for a secret as given: (encrypted, None), or (None, variable) for `env:NAME`."""
    if secret.startswith(ENV_PREFIX):
        name = secret[len(ENV_PREFIX) :].strip()
        if not name or not name.replace("_", "").isalnum():
            raise ValueError("an environment reference is env:NAME with letters, digits and _")
        return None, name
    return Fernet(_key(settings)).encrypt(secret.encode()).decode(), None


def unseal(settings: Settings, encrypted: str | None, variable: str | None) -> str | None:
    """The secret in clear, for the worker that sends; None if the destination has none."""
    if variable:
        value = os.environ.get(variable)
        if value is None:
            raise SecretMissing(
                f"the environment variable {variable} holding this destination's secret is unset"
            )
        return value
    if not encrypted:
        return None
    try:
        return Fernet(_key(settings)).decrypt(encrypted.encode()).decode()
    except InvalidToken:
        raise SecretMissing(
            "this destination's secret was encrypted with another key (OPENCDP_SECRET_KEY or the data "
            "folder's secret.key changed); save the secret again"
        ) from None
