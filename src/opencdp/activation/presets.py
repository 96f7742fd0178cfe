"""Presets: ready-made webhook configurations for common tools (docs/destinations/presets.md).

A marketer picks "HubSpot contact upsert", gives a token and a few options, and gets an ordinary
`webhook` destination: `build(options)` returns its configuration, which is saved, validated and
sent like any other (and can be changed afterwards like any other). Each preset names the vendor's
documentation its request follows; nothing here talks to a vendor by itself.

Options are text (they come from the command line). Every preset has `base_url`, the vendor's API
address by default: change it only for a proxy, or to point a test at a local receiver.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from opencdp.activation.drivers.base import DestinationConfigError

#: trait names and vendor field names a preset puts into templates (quoted with repr): plain names only
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")


@dataclass(frozen=True)
class PresetOption:
    name: str
    description: str
    #: None: the option must be given
    default: str | None = None

    @property
    def required(self) -> bool:
        return self.default is None


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    description: str
    #: the vendor's documentation of the request this preset sends
    reference: str
    #: what to give as the destination's secret
    secret: str
    options: tuple[PresetOption, ...]
    builder: Callable[[dict[str, str]], dict[str, Any]]

    def build(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The webhook configuration for these options (DestinationConfigError names a bad one)."""
        known = {o.name: o for o in self.options}
        for key in options:
            if key not in known:
                raise DestinationConfigError(key, f"unknown option of {self.name}; known: {', '.join(known)}")
        values: dict[str, str] = {}
        for option in self.options:
            given = options.get(option.name)
            value = (option.default or "") if given is None else str(given).strip()
            if option.required and not value:
                raise DestinationConfigError(option.name, f"required by {self.name}: {option.description}")
            values[option.name] = value
        base = values["base_url"].rstrip("/")
        probe = base.replace("{dc}", "dc")  # Mailchimp's data center, filled in by its builder
        parts = urlsplit(probe)
        if parts.scheme not in ("http", "https") or not parts.netloc or "{" in probe or "}" in probe:
            raise DestinationConfigError("base_url", "an http:// or https:// address")
        values["base_url"] = base
        return self.builder(values)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "reference": self.reference,
            "secret": self.secret,
            "options": [
                {"name": o.name, "description": o.description, "required": o.required, "default": o.default}
                for o in self.options
            ],
        }


def _name(values: dict[str, str], option: str) -> str:
    value = values[option]
    if not _NAME.match(value):
        raise DestinationConfigError(option, "a plain name: letters, digits and _, not starting with a digit")
    return value


def _pairs(values: dict[str, str], option: str) -> list[tuple[str, str]]:
    """`vendor_field=trait,…` as pairs (empty text: none)."""
    pairs: list[tuple[str, str]] = []
    for item in filter(None, (part.strip() for part in values[option].split(","))):
        field, sep, trait = (x.strip() for x in item.partition("="))
        if not sep or not _NAME.match(field) or not _NAME.match(trait):
            raise DestinationConfigError(option, f"{item!r}: write vendor_field=trait, separated by commas")
        pairs.append((field, trait))
    return pairs


def _trait(name: str) -> str:
    return f"profile.traits[{name!r}]"


def _mapped(pairs: list[tuple[str, str]], *extra: str) -> str:
    """A template for an object of vendor fields from traits (and `extra` `'field': expression`
    items), leaving out what a profile lacks rather than sending null."""
    items = [f"{field!r}: {_trait(trait)}" for field, trait in pairs]
    return "{{ {" + ", ".join([*items, *extra]) + "} | compact }}"


def _option(name: str, description: str, default: str | None = None) -> PresetOption:
    return PresetOption(name, description, default)


def _base_url(default: str) -> PresetOption:
    return _option("base_url", "API base URL, for proxies and tests (leave it for the vendor's own)", default)


# --- HubSpot: contacts upserted by e-mail, in batches of 100 ---------------------------------------


def _hubspot(values: dict[str, str]) -> dict[str, Any]:
    email = f"{_trait(_name(values, 'email_trait'))} | normalise_email"
    pairs = _pairs(values, "properties")
    extra = [f"'email': {email}"]
    if values["membership_property"]:
        membership = _name(values, "membership_property")
        extra.append(
            f"{membership!r}: ('true' if action == 'add' else ('false' if action == 'remove' else none))"
        )
    return {
        "url": f"{values['base_url']}/crm/v3/objects/contacts/batch/upsert",
        "method": "POST",
        "headers": {"Authorization": "Bearer {{ secret }}"},
        "body": {
            "idProperty": "email",
            "id": "{{ " + email + " }}",
            "properties": _mapped(pairs, *extra),
        },
        "batch_size": 100,
        "batch_body": {"inputs": "{{ messages }}"},
        "required": {"email": "{{ " + email + " }}"},
    }


HUBSPOT = Preset(
    name="hubspot-contacts",
    title="HubSpot contact upsert",
    description=(
        "Creates or updates HubSpot contacts by e-mail address (CRM v3 batch upsert, 100 a request) "
        "with properties from profile traits; optionally a checkbox property that says whether the "
        "contact is in the synced segment. Profiles without an e-mail are not sent."
    ),
    reference="https://developers.hubspot.com/docs/api-reference/legacy/crm/objects/contacts/batch/upsert-contacts",
    secret="a HubSpot private app access token with the crm.objects.contacts.write scope",
    options=(
        _option(
            "properties",
            "HubSpot property=trait pairs, comma-separated (email is always sent)",
            "firstname=firstName,lastname=lastName,phone=phone",
        ),
        _option(
            "membership_property",
            "a HubSpot contact property set to 'true' on segment entry and 'false' on exit (none if empty)",
            "",
        ),
        _option("email_trait", "the trait holding the e-mail address", "email"),
        _base_url("https://api.hubapi.com"),
    ),
    builder=_hubspot,
)


# --- Mailchimp: an audience's member added or updated, one request each -----------------------------

_DC = re.compile(r"^[a-z]{2,4}[0-9]{1,3}$")
_LIST = re.compile(r"^[A-Za-z0-9]{1,64}$")


def _mailchimp(values: dict[str, str]) -> dict[str, Any]:
    dc, list_id = values["dc"], values["list_id"]
    if not _DC.match(dc):
        raise DestinationConfigError("dc", "the data center, the part of the API key after '-' (e.g. us6)")
    if not _LIST.match(list_id):
        raise DestinationConfigError(
            "list_id", "the audience (list) id, letters and digits (e.g. a1b2c3d4e5)"
        )
    status = values["status_if_new"]
    if status not in ("subscribed", "pending"):
        raise DestinationConfigError(
            "status_if_new", "subscribed, or pending (Mailchimp sends a confirmation)"
        )
    base = values["base_url"].replace("{dc}", dc)
    email = f"{_trait(_name(values, 'email_trait'))} | normalise_email"
    return {
        "url": f"{base}/3.0/lists/{list_id}/members/" + "{{ " + email + " | md5 }}",
        "method": "PUT",
        "headers": {"Authorization": "Basic {{ ('opencdp:' ~ secret) | base64 }}"},
        "body": {
            "email_address": "{{ " + email + " }}",
            "status_if_new": "{{ 'unsubscribed' if action == 'remove' else " + repr(status) + " }}",
            "merge_fields": _mapped(_pairs(values, "merge_fields")),
        },
        "batch_size": 1,
        "required": {"email": "{{ " + email + " }}"},
    }


MAILCHIMP = Preset(
    name="mailchimp-members",
    title="Mailchimp audience member upsert",
    description=(
        "Adds or updates a member of a Mailchimp audience (list) by e-mail address, with merge "
        "fields from traits. A new member is added as subscribed (or pending) on segment entry and "
        "as unsubscribed on exit; an existing member's status is never changed."
    ),
    reference="https://mailchimp.com/developer/marketing/api/list-members/add-or-update-list-member/",
    secret="a Mailchimp API key (sent with HTTP Basic authentication)",
    options=(
        _option("dc", "the data center: the end of the API key after '-' (e.g. us6)"),
        _option("list_id", "the audience (list) id, from the audience's settings"),
        _option(
            "status_if_new", "status of an address new to the audience: subscribed or pending", "subscribed"
        ),
        _option("merge_fields", "MERGE_TAG=trait pairs, comma-separated", "FNAME=firstName,LNAME=lastName"),
        _option("email_trait", "the trait holding the e-mail address", "email"),
        _base_url("https://{dc}.api.mailchimp.com"),
    ),
    builder=_mailchimp,
)


# --- Meta: a customer list custom audience, hashed e-mail and phone --------------------------------

_VERSION = re.compile(r"^v[0-9]{1,3}\.[0-9]$")
_REGION = re.compile(r"^[A-Z]{2}$")


def _meta(values: dict[str, str]) -> dict[str, Any]:
    audience, version, region = values["audience_id"], values["api_version"], values["default_region"]
    if not audience.isdigit():
        raise DestinationConfigError("audience_id", "the custom audience's numeric id")
    if not _VERSION.match(version):
        raise DestinationConfigError("api_version", "a Graph API version such as v25.0")
    if region and not _REGION.match(region):
        raise DestinationConfigError(
            "default_region", "a two-letter country code such as GB or US (or empty)"
        )
    try:
        batch = int(values["batch_size"])
    except ValueError:
        batch = 0
    if not 2 <= batch <= 1000:
        raise DestinationConfigError("batch_size", "a whole number from 2 to 1000")
    email = f"{_trait(_name(values, 'email_trait'))} | hash_email"
    region_literal = repr(region) if region else "none"
    phone = f"{_trait(_name(values, 'phone_trait'))} | hash_phone({region_literal}, plus=False)"
    return {
        "url": f"{values['base_url']}/{version}/{audience}/users",
        "method": "{{ 'DELETE' if action == 'remove' else 'POST' }}",
        "headers": {"Authorization": "Bearer {{ secret }}"},
        "body": ["{{ " + email + " or '' }}", "{{ " + phone + " or '' }}"],
        "batch_size": batch,
        "batch_body": {"payload": {"schema": ["EMAIL", "PHONE"], "data": "{{ messages }}"}},
        "required": {"email or phone": "{{ (" + email + ") or (" + phone + ") }}"},
    }


META = Preset(
    name="meta-custom-audience",
    title="Meta (Facebook) custom audience",
    description=(
        "Adds profiles to a Meta customer list custom audience on segment entry (POST) and removes "
        "them on exit (DELETE), matched by SHA-256 of the normalised e-mail and phone number. "
        "Profiles with neither are not sent."
    ),
    reference="https://developers.facebook.com/docs/marketing-api/audiences/guides/custom-audiences",
    secret="a Meta access token (a system user's) with the ads_management permission",
    options=(
        _option("audience_id", "the custom audience's id (create it as a customer list audience first)"),
        _option("api_version", "the Graph API version", "v25.0"),
        _option(
            "default_region",
            "two-letter country of phone numbers written without a country code (else they are left out)",
            "",
        ),
        _option("batch_size", "profiles a request, 2 to 1000 (Meta takes up to 10,000)", "500"),
        _option("email_trait", "the trait holding the e-mail address", "email"),
        _option("phone_trait", "the trait holding the phone number", "phone"),
        _base_url("https://graph.facebook.com"),
    ),
    builder=_meta,
)


PRESETS: dict[str, Preset] = {p.name: p for p in (HUBSPOT, MAILCHIMP, META)}


def get(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise DestinationConfigError(
            "preset", f"unknown preset {name!r}; one of {', '.join(PRESETS)}"
        ) from None


def merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """A preset's configuration with settings given over it; objects (headers, body) merge key by key."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged
