"""opencdp: an open-source, privacy-first Customer Data Platform."""

__version__ = "0.1.0"
