"""Privacy by construction: consent, data subject requests, suppression, retention."""
