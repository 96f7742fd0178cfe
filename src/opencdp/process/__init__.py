"""Processing: from the event log to the identity graph and profiles, in log order."""
