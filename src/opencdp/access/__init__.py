"""Who may do what: source write keys and admin API keys."""
