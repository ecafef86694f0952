"""Fixtures of the API suite: `db_url`, `app`, `client` and `rdb` come from tests/conftest.py
(SQLite, and a PostgreSQL database private to the session)."""
