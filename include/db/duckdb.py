"""DuckDB: one embedded file, no server. One process may write at a time, hence the 1-slot pool."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from include.db.base import RegistryDatabase


class DuckDBDatabase(RegistryDatabase):
    conn_type = "duckdb"
    # DuckDB locks the file per process: a second writer fails with "Could not set lock on file".
    pool_slots = 1
    placeholder = "?"

    @property
    def path(self) -> str:
        """The database file; an empty host means an in-memory database, useless across tasks."""
        if not self.connection.host:
            raise ValueError(
                f"Connection {self.conn_id!r} (duckdb) has no host; set host to the database file path, "
                "e.g. AIRFLOW_CONN_MRI_DB='{\"conn_type\": \"duckdb\", \"host\": \"/abs/path/mri.duckdb\"}'."
            )
        return self.connection.host

    def describe(self) -> str:
        return self.connection.host or ":memory:"

    def _connect(self) -> Any:
        import duckdb

        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        return duckdb.connect(self.path)

    def _begin(self, connection: Any) -> Any:
        # A DuckDB connection executes statements itself; its cursor() would open a second connection.
        connection.begin()
        return connection
