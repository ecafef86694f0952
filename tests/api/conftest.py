"""Fixtures of the API suite.

tests/conftest.py's `db_url` looks up `f"{param}_url"`, i.e. `postgresql_url`, while the fixture there
is called `postgres_url`; this alias makes the PostgreSQL half of every API test run (harmless
once the name is fixed there).
"""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def postgresql_url(postgres_url):
    return postgres_url
