"""The PostgreSQL and Redis that the tests, the benchmarks and `make demo-scale` start on this
machine let no one in without their random password (issue 19): any local user reaches 127.0.0.1."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import psycopg2
import pytest
import redis

from launcher.servers import without_password
from tests.support.redis import running_redis


def command_lines() -> list[str]:
    """Every process's command line, as `ps` shows it to any user."""
    lines = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            lines.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:  # the process ended meanwhile
            continue
    return lines


def test_postgres_refuses_a_connection_without_its_password(postgres_server):
    address = {"host": postgres_server.host, "port": postgres_server.port, "user": postgres_server.user}

    with pytest.raises(psycopg2.OperationalError, match="no password supplied"):
        psycopg2.connect(**address, dbname=postgres_server.database)
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(**address, dbname=postgres_server.database, password="guessed")
    # Its Unix socket, in its 0700 data folder, asks for the password too.
    with pytest.raises(psycopg2.OperationalError, match="no password supplied"):
        psycopg2.connect(**{**address, "host": str(postgres_server.data_dir)}, dbname=postgres_server.database)
    assert postgres_server.data_dir.stat().st_mode & 0o077 == 0

    with psycopg2.connect(postgres_server.url) as conn, conn.cursor() as cursor:
        cursor.execute("SHOW listen_addresses")
        assert cursor.fetchone() == ("127.0.0.1",)
    assert not any(postgres_server.password in line for line in command_lines())
    assert postgres_server.password not in repr(postgres_server)


def test_redis_refuses_a_client_without_its_password():
    with running_redis() as url:
        address = urlsplit(url)

        with pytest.raises(redis.AuthenticationError, match="Authentication required"):
            redis.Redis(host=address.hostname, port=address.port).ping()
        assert redis.Redis.from_url(url).ping()
        assert not any(address.password in line for line in command_lines())
        assert without_password(url) == f"redis://:***@127.0.0.1:{address.port}/0"
