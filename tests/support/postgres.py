"""A fresh database on the machine's PostgreSQL (127.0.0.1:5432, trust auth as on
CI), dropped afterwards; the test is skipped when no PostgreSQL answers."""
from __future__ import annotations

import contextlib
import secrets

import pytest

ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"


@contextlib.contextmanager
def fresh_database(prefix: str):
    """Yields ``postgresql://postgres@127.0.0.1:5432/<prefix><random>``."""
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(ADMIN, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL on 127.0.0.1:5432: {exc}")
    name = prefix + secrets.token_hex(4)
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
