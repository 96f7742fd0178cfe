"""Identity resolution: which identifiers belong to the same real person."""
