"""Templates for what destinations send, in Jinja2's sandbox (a template is data written by a
dashboard user: it may read the message's context but not reach Python's internals).

A body template is JSON whose strings are templates: a string that is exactly one expression,
`"{{ profile.traits.email }}"`, keeps the expression's type (number, list, object, null); any
other string is rendered as text. That is the field mapping: `{"email": "{{ profile.traits.email
}}", "total": "{{ event.properties.total }}"}`.

Filters for the formats ad platforms and CRMs require: `sha256`, `normalise_email`,
`normalise_phone` (E.164), `hash_email` and `hash_phone` (SHA-256 of the normalised value, as
Google Customer Match and TikTok require; Meta wants the phone's digits without the `+`:
`hash_phone(region, plus=False)`), `iso` (a datetime as ISO 8601), `md5` (only for Mailchimp's
subscriber hash, the MD5 of the lower-cased e-mail: MD5 protects nothing, never use it to
pseudonymise), `base64` (text as Base64, for HTTP Basic authorization headers), `compact` (an
object without its empty values: `"{{ {'firstname': profile.traits.firstName} | compact }}"` leaves
out what a profile does not have, instead of sending null).
"""

from __future__ import annotations

import base64 as _base64
import hashlib
import re
from datetime import datetime
from functools import lru_cache
from typing import Any

import phonenumbers
from jinja2 import ChainableUndefined, StrictUndefined, TemplateError, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

_WHOLE_EXPRESSION = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.DOTALL)


class TemplateProblem(ValueError):
    """A template that does not compile or fails to render; the message says where."""


def sha256(value: Any) -> str | None:
    if value is None or isinstance(value, Undefined):
        return None
    return hashlib.sha256(str(value).encode()).hexdigest()


def normalise_email(value: Any) -> str | None:
    if not isinstance(value, str) or "@" not in value:
        return None
    return value.strip().lower()


def md5(value: Any) -> str | None:
    """Hex MD5: only for identifiers a vendor defines that way (Mailchimp's subscriber hash)."""
    if value is None or isinstance(value, Undefined):
        return None
    return hashlib.md5(str(value).encode(), usedforsecurity=False).hexdigest()


def b64(value: Any) -> str | None:
    if value is None or isinstance(value, Undefined):
        return None
    return _base64.b64encode(str(value).encode()).decode("ascii")


def compact(value: Any) -> Any:
    """An object without its null, undefined and empty-text values (other values pass through)."""
    if not isinstance(value, dict):
        return value
    return {k: v for k, v in value.items() if not (v is None or isinstance(v, Undefined) or v == "")}


def normalise_phone(value: Any, region: str | None = None, plus: bool = True) -> str | None:
    """E.164 (`+447700900123`); with plus=False its digits only (`447700900123`, Meta's form).
    `region` (ISO country code) places numbers written without a country code."""
    if value is None or isinstance(value, Undefined):
        return None
    try:
        number = phonenumbers.parse(str(value), region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164 if plus else e164.lstrip("+")


def hash_email(value: Any) -> str | None:
    return sha256(normalise_email(value))


def hash_phone(value: Any, region: str | None = None, plus: bool = True) -> str | None:
    return sha256(normalise_phone(value, region, plus))


def iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _environment(strict: bool) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        autoescape=False,
        undefined=StrictUndefined if strict else ChainableUndefined,
        keep_trailing_newline=True,
    )
    env.filters.update(
        sha256=sha256,
        normalise_email=normalise_email,
        normalise_phone=normalise_phone,
        hash_email=hash_email,
        hash_phone=hash_phone,
        iso=iso,
        md5=md5,
        base64=b64,
        compact=compact,
    )
    return env


_ENV = _environment(strict=False)
#: HTML e-mail bodies: every value escaped unless marked safe
_HTML_ENV = _environment(strict=False)
_HTML_ENV.autoescape = True


@lru_cache(maxsize=2048)
def _compiled(source: str, html: bool) -> Any:
    env = _HTML_ENV if html else _ENV
    match = _WHOLE_EXPRESSION.match(source)
    try:
        if match and "{{" not in match.group(1) and "{%" not in source:
            return ("expression", env.compile_expression(match.group(1), undefined_to_none=True))
        return ("text", env.from_string(source))
    except TemplateError as exc:
        raise TemplateProblem(f"template {source[:60]!r} does not compile: {exc}") from exc


def render_text(source: str, context: dict[str, Any], html: bool = False) -> str:
    """A text template (subject, e-mail body, file name, subject of a broker message)."""
    _, template = _compiled(source, html) if "{" in source else ("text", None)
    if template is None:
        return source
    try:
        if _ == "expression":
            value = template(**context)
            return "" if value is None else str(value)
        return str(template.render(**context))
    except TemplateError as exc:
        raise TemplateProblem(f"template {source[:60]!r} failed: {exc}") from exc
    except (TypeError, ValueError, AttributeError, KeyError, ZeroDivisionError) as exc:
        raise TemplateProblem(f"template {source[:60]!r} failed: {type(exc).__name__}: {exc}") from exc


def render_value(template: Any, context: dict[str, Any]) -> Any:
    """A JSON body template rendered: strings rendered (a lone expression keeps its type),
    lists and objects walked, everything else kept."""
    if isinstance(template, str):
        if "{" not in template:
            return template
        kind, compiled = _compiled(template, False)
        try:
            if kind == "expression":
                return _plain(compiled(**context))
            return str(compiled.render(**context))
        except TemplateError as exc:
            raise TemplateProblem(f"template {template[:60]!r} failed: {exc}") from exc
        except (TypeError, ValueError, AttributeError, KeyError, ZeroDivisionError) as exc:
            raise TemplateProblem(f"template {template[:60]!r} failed: {type(exc).__name__}: {exc}") from exc
    if isinstance(template, dict):
        return {str(k): render_value(v, context) for k, v in template.items()}
    if isinstance(template, list):
        return [render_value(v, context) for v in template]
    return template


def _plain(value: Any) -> Any:
    """Sandbox values as JSON-able data (Undefined → None, datetimes → ISO text)."""
    if isinstance(value, Undefined):
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if callable(value):  # `x.items` finds dict.items: a key named like a method needs x['items']
        raise TemplateProblem("an expression names a method, not a value (write x['name'] for such keys)")
    return value


def check(template: Any, html: bool = False) -> None:
    """Compile every string of a template now, so a broken one is refused when it is saved."""
    if isinstance(template, str):
        if "{" in template:
            _compiled(template, html)
    elif isinstance(template, dict):
        for value in template.values():
            check(value, html)
    elif isinstance(template, list):
        for value in template:
            check(value, html)
