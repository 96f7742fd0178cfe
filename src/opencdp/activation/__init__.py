"""Activation: what leaves the platform. Destinations (drivers that reach the outside world), the
outbox of deliveries the processor writes in its own transaction, and the delivery worker that
sends them, at least once, with consent checked at send time (docs/activation.md)."""
