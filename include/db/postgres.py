"""PostgreSQL: a server that takes many writers at once (MVCC, row locks, ON CONFLICT)."""

from __future__ import annotations

from typing import Any

from include.db.base import RegistryDatabase

# Any constant shared by all migration runners: pg_advisory_xact_lock takes a bigint key.
MIGRATION_LOCK_KEY = 4_202_611


class PostgresDatabase(RegistryDatabase):
    conn_type = "postgres"
    # Parallel writers are the point of Postgres; the pool only caps connections.
    pool_slots = 32
    placeholder = "%s"

    def describe(self) -> str:
        c = self.connection
        return f"{c.host}:{c.port or 5432}/{c.schema or ''}"

    def _connect(self) -> Any:
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        return PostgresHook(postgres_conn_id=self.conn_id).get_conn()

    def _begin(self, connection: Any) -> Any:
        # psycopg2 opens the transaction implicitly with the first statement.
        return connection.cursor()

    def lock_for_migrations(self, cursor: Any) -> None:
        # Released at commit/rollback; a second runner waits, then sees the versions already applied.
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
