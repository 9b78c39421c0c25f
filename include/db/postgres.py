"""PostgreSQL: a server that takes many writers at once (MVCC, row locks, ON CONFLICT)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from include.db.base import RegistryDatabase

# Any constant shared by all migration runners: pg_advisory_xact_lock takes a bigint key.
MIGRATION_LOCK_KEY = 4_202_611
# Another constant, shared by all promotions (include.deploy.promotion).
PROMOTION_LOCK_KEY = 4_202_612


def copy_text_field(value: Any) -> str:
    """One value in COPY's text format: NULL is \\N; backslash, tab, newline and CR are escaped."""
    if value is None:
        return "\\N"
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


# Connection extras passed on to libpq (TLS, timeouts); the rest of `extra` is Airflow's.
LIBPQ_OPTIONS = frozenset(
    {"sslmode", "sslcert", "sslkey", "sslrootcert", "sslcrl", "connect_timeout", "options", "application_name"}
)


class PostgresDatabase(RegistryDatabase):
    conn_type = "postgres"
    # Parallel writers are the point of Postgres; the pool only caps connections.
    pool_slots = 32
    # Many batches for many writers; each still COPYs hundreds of rows at once.
    register_batch_size = 500
    placeholder = "%s"

    def describe(self) -> str:
        c = self.connection
        return f"{c.host}:{c.port or 5432}/{c.schema or ''}"

    def _connect(self) -> Any:
        # psycopg2, whatever the Postgres provider picks: its hook hands out psycopg 3 connections
        # where SQLAlchemy 2 runs (Airflow 3), and the bulk path below is psycopg2's COPY.
        import psycopg2

        c = self.connection
        options = {key: value for key, value in (c.extra_dejson or {}).items() if key in LIBPQ_OPTIONS}
        return psycopg2.connect(
            host=c.host, port=c.port or 5432, user=c.login, password=c.password, dbname=c.schema, **options
        )

    def _begin(self, connection: Any) -> Any:
        # psycopg2 opens the transaction implicitly with the first statement.
        return connection.cursor()

    def lock_for_migrations(self, cursor: Any) -> None:
        # Released at commit/rollback; a second runner waits, then sees the versions already applied.
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))

    def lock_for_promotion(self, cursor: Any) -> None:
        # Held to commit/rollback. A second promotion waits here; its next statement then reads the
        # first one's commit (READ COMMITTED), so the "production changed" check refuses it.
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (PROMOTION_LOCK_KEY,))

    def _copy(self, cursor: Any, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        buffer = io.StringIO("".join("\t".join(map(copy_text_field, row)) + "\n" for row in rows))
        cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", buffer)

    def _insert_unique_rows(
        self, cursor: Any, table: str, columns: Sequence[str], key: str, rows: Sequence[Sequence[Any]]
    ) -> None:
        import psycopg2.errors

        # New files are the common case: COPY straight into the table. If any key exists
        # (a re-run, an overlapping batch, a concurrent writer that got there first), the
        # savepoint undoes the COPY and the staged ON CONFLICT path inserts only what is new.
        cursor.execute("SAVEPOINT direct_copy")
        try:
            self._copy(cursor, table, columns, rows)
        except psycopg2.errors.UniqueViolation:
            cursor.execute("ROLLBACK TO SAVEPOINT direct_copy")
            super()._insert_unique_rows(cursor, table, columns, key, rows)
        else:
            cursor.execute("RELEASE SAVEPOINT direct_copy")

    def _stage(self, cursor: Any, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
        # Each writer has its own temp table, so concurrent writers only meet at ON CONFLICT.
        name = f"staged_{table}"
        cursor.execute(
            f"CREATE TEMP TABLE {name} ON COMMIT DROP AS SELECT {', '.join(columns)} FROM {table} WITH NO DATA"
        )
        self._copy(cursor, name, columns, rows)
        return name
