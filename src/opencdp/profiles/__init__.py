"""Unified profiles: traits, system fields and counters derived from a person's events."""
