"""Computed traits: values kept up to date on every profile from its events."""
