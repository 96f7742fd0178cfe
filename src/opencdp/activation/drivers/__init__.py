"""The destination kinds, found by name. Each lives in its own module, imported when first used
(a broker's client library is loaded only by installations that have such a destination)."""

from __future__ import annotations

import importlib

from opencdp.activation.drivers.base import DestinationConfigError, Driver, Message, Outcome

__all__ = ["KINDS", "DestinationConfigError", "Driver", "Message", "Outcome", "driver_class"]

#: kind → "module:class"
KINDS = {
    "webhook": "opencdp.activation.drivers.webhook:WebhookDriver",
    "smtp": "opencdp.activation.drivers.smtp:SmtpDriver",
    "nats": "opencdp.activation.drivers.nats:NatsDriver",
    "rabbitmq": "opencdp.activation.drivers.rabbitmq:RabbitMQDriver",
    "file": "opencdp.activation.drivers.files:FileDriver",
}


def driver_class(kind: str) -> type[Driver]:
    if kind not in KINDS:
        raise DestinationConfigError("kind", f"unknown destination kind {kind!r}; one of {', '.join(KINDS)}")
    module, _, name = KINDS[kind].partition(":")
    cls: type[Driver] = getattr(importlib.import_module(module), name)
    return cls
