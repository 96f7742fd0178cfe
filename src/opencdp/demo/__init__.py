"""A seeded synthetic shop, sent through the real HTTP API, so a newcomer sees real data at once."""
