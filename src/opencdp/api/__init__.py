"""HTTP: the Segment-compatible collection API under /v1 and the admin API under /api."""
