"""Real-time personalisation: sessions, experiences, decisions, uplift and form analytics."""
