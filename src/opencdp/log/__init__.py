"""The event log: reading what the collector stored."""
