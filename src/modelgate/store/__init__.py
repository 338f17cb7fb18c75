"""Durable state: SQLite through SQLAlchemy (the same schema runs on PostgreSQL)."""
