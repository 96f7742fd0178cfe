"""The customer-facing face: what a brand's customers see and use themselves (docs/identity.md)."""
