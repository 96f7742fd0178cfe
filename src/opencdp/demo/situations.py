"""The situations the demo shop plants so that features have something to show, each a small
piece of a customer's story. The generator (`shop.py`) decides who gets which; these functions
only shape the events.

- consent banner: most visitors accept a cookie/consent banner on their first visit on a device;
  some choose only some purposes, a few decline, a few close it without choosing (no record, so
  opt-in purposes stay off), and a few later withdraw e-mail marketing in the preference centre.
  The choice travels as Segment's `context.consent.categoryPreferences` on a
  "Segment Consent Preference Updated" track call (what Segment's consent wrapper sends when a
  choice is made or changed) and on the sign-up identify; other events do not repeat it, so the
  consent history holds changes, not one row per page view.
- checkout form trouble: a checkout form whose `postcode` field fails validation far more often
  than any other field (`Form Field Errored`, after a `Form Field Focused`), and carts given up
  right there (`Form Abandoned`): the form report's funnel shows it.
- sharers: some buyers share a product (`Product Shared` with a `share_id`); later visitors arrive
  through that link (`context.campaign.content` and `properties.share_id` name the share) and some
  order in that first visit, with the same campaign context, so orders can be attributed to sharers.
- category interest (in `shop.py`): people who keep viewing one category's products, never buying.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

#: The banner's categories, named as on the banner; `purpose_name()` turns them into the default
#: purposes analytics, email_marketing, sms, personalisation and advertising.
BANNER = ("Analytics", "Email Marketing", "SMS", "Personalisation", "Advertising")
BANNER_VERSION = "2026-06"
CONSENT_EVENT = "Segment Consent Preference Updated"

#: Fields of the checkout form and how often each one is the one that fails validation.
FORM_FIELDS = {"postcode": 70, "phone": 12, "email": 8, "card_number": 6, "street": 4}
FORM_ERRORS = {
    "postcode": "Please enter a valid postcode",
    "phone": "Please enter a valid phone number",
    "email": "Please enter a valid e-mail address",
    "card_number": "Card number is invalid",
    "street": "Please enter your street and house number",
}
SHARE_CHANNELS = ("whatsapp", "facebook", "pinterest", "instagram", "email")


@dataclass(frozen=True)
class Share:
    share_id: str
    sharer: str  # user id
    at: datetime
    product_id: str
    category: str
    channel: str

    @property
    def url(self) -> str:
        return f"https://shop.example/p/{self.product_id}?share={self.share_id}&utm_source={self.channel}"

    def campaign(self) -> dict[str, str]:
        """`context.campaign` of a visit through the shared link (UTM parameters of the link)."""
        return {
            "name": "product_share",
            "source": self.channel,
            "medium": "social",
            "content": self.share_id,
        }


def banner_choice(rng: random.Random) -> dict[str, bool] | None:
    """What one visitor does with the consent banner: None when they close it without choosing."""
    roll = rng.random()
    if roll < 0.72:  # accept all
        return dict.fromkeys(BANNER, True)
    if roll < 0.87:  # choose some: analytics mostly, the rest by taste
        return {
            "Analytics": rng.random() < 0.9,
            "Email Marketing": rng.random() < 0.5,
            "SMS": rng.random() < 0.2,
            "Personalisation": rng.random() < 0.6,
            "Advertising": rng.random() < 0.3,
        }
    if roll < 0.96:  # decline all
        return dict.fromkeys(BANNER, False)
    return None


def consent_context(choice: dict[str, bool]) -> dict[str, Any]:
    return {"consent": {"categoryPreferences": dict(choice), "version": BANNER_VERSION}}


def form_error(rng: random.Random, form: str = "checkout") -> dict[str, Any]:
    field = rng.choices(list(FORM_FIELDS), weights=list(FORM_FIELDS.values()))[0]
    return {"form_id": form, "field": field, "message": FORM_ERRORS[field]}


def focus(error: dict[str, Any]) -> dict[str, Any]:
    """The `Form Field Focused` properties of the field an error names."""
    return {"form_id": error["form_id"], "field": error["field"]}
