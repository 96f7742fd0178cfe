"""The seed scenarios' definitions that several tests drive through different destinations."""

from __future__ import annotations

from typing import Any

#: who received their last 10 e-mails and opened none
EMAIL_IGNORERS: dict[str, Any] = {
    "and": [
        {"event": "Email Delivered", "count": {"op": "gte", "value": 10}},
        {"not": {"event": "Email Opened"}},
    ]
}

#: the switch-channel journey's message, sent through the destination "sms gateway"
SMS_OFFER = "20% off this weekend - reply STOP to opt out"
SEND_SMS: dict[str, Any] = {
    "id": "sms",
    "send": {"destination": "sms gateway", "channel": "sms", "content": {"text": SMS_OFFER}},
}
