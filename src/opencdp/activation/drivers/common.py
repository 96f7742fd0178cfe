"""What the broker drivers share: checking their settings when a destination is saved, and turning a
message into the JSON bytes they publish.

Settings are checked strictly (an unknown key is refused, not ignored) because a misspelt
`create_stream` or `declare_queue` would otherwise be silently dropped and surface later as
deliveries that fail for a reason nobody can see in the saved configuration.
"""

from __future__ import annotations

from typing import Any

import orjson

from opencdp.activation.drivers.base import DestinationConfigError, Message
from opencdp.activation.templates import TemplateProblem, check, render_value

MAX_TIMEOUT_SECONDS = 300.0


def settings(
    config: dict[str, Any], defaults: dict[str, Any], required: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The configuration with defaults filled in; unknown or missing keys refused."""
    if not isinstance(config, dict):
        raise DestinationConfigError("config", "must be a JSON object")
    for key in config:
        if key not in defaults and key not in required:
            known = ", ".join(sorted([*defaults, *required]))
            raise DestinationConfigError(key, f"unknown setting (known: {known})")
    for key in required:
        if config.get(key) in (None, ""):
            raise DestinationConfigError(key, "is required")
    return {**defaults, **{k: v for k, v in config.items() if v is not None}}


def timeout(config: dict[str, Any], key: str = "timeout_seconds") -> float:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_TIMEOUT_SECONDS:
        raise DestinationConfigError(
            key, f"must be a number of seconds above 0 and at most {MAX_TIMEOUT_SECONDS:g}"
        )
    return float(value)


def flag(config: dict[str, Any], key: str) -> bool:
    if not isinstance(config[key], bool):
        raise DestinationConfigError(key, "must be true or false")
    return bool(config[key])


def optional_text(config: dict[str, Any], key: str) -> str | None:
    value = config.get(key)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise DestinationConfigError(key, "must be a non-empty text")
    return value


def text_template(config: dict[str, Any], key: str) -> str:
    """A required text template, compiled now so that a broken one is refused when saved."""
    value = config.get(key)
    if not isinstance(value, str) or not value:
        raise DestinationConfigError(key, "must be a non-empty text (a template)")
    try:
        check(value)
    except TemplateProblem as exc:
        raise DestinationConfigError(key, str(exc)) from exc
    return value


def body_template(config: dict[str, Any], key: str = "body") -> Any:
    """The optional JSON body template: any JSON value whose strings are templates."""
    value = config.get(key)
    if value is None:
        return None
    try:
        orjson.dumps(value)
        check(value)
    except TypeError as exc:
        raise DestinationConfigError(key, f"must be JSON: {exc}") from exc
    except TemplateProblem as exc:
        raise DestinationConfigError(key, str(exc)) from exc
    return value


def payload(config: dict[str, Any], message: Message) -> bytes:
    """The message's JSON body: the destination's `body` template rendered, else the default body.
    Raises TemplateProblem when the template fails or renders something that is not JSON."""
    body = message.body if config.get("body") is None else render_value(config["body"], message.context)
    try:
        return orjson.dumps(body)
    except TypeError as exc:
        raise TemplateProblem(f"the body is not JSON: {exc}") from exc


def describe(exc: BaseException, secret: str | None = None) -> str:
    """An exception as one line for a delivery's error, with the secret blanked should a client
    library have put it in its message (some echo their connection URL)."""
    text = str(exc).strip() or repr(exc)
    text = f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text
    if secret:
        text = text.replace(secret, "***")
    return text[:500]
