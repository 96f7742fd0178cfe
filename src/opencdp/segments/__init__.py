"""Segments: who, described as data, compiled to SQL, kept as memberships."""
