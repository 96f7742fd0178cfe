"""Storage: one schema, one code path, SQLite or PostgreSQL through SQLAlchemy Core."""
