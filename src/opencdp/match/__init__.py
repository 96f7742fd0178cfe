"""Probabilistic identity matching: jobs that find records of one person with no shared key."""
