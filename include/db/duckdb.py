"""DuckDB: one embedded file, no server. One process may write at a time, hence the 1-slot pool."""

from __future__ import annotations

import re
from collections.abc import Sequence
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
                'e.g. AIRFLOW_CONN_MRI_DB=\'{"conn_type": "duckdb", "host": "/abs/path/mri.duckdb"}\'.'
            )
        return self.connection.host

    def describe(self) -> str:
        return self.connection.host or ":memory:"

    def explain_open_error(self, err: Exception) -> str | None:
        # DuckDB's text: 'Could not set lock on file "<path>": Conflicting lock is held in
        # <program> (PID <n>) by user <u>.' Only the holder can release it.
        if "Could not set lock on file" not in str(err):
            return None
        holder = re.search(r"lock is held in (.+?) \(PID (\d+)\)", str(err))
        who = f"{holder[1]} (PID {holder[2]})" if holder else "unknown, see `fuser` on the file"
        return (
            f"MRI_DB_CONN_ID {self.conn_id!r}: another process holds the lock on the DuckDB file {self.path}: "
            f"{who}. DuckDB lets one process open a file at a time; stop that process (e.g. the scheduler "
            "while `make migrate` runs) or wait for its task to finish, or point AIRFLOW_VAR_MRI_DB_CONN_ID "
            "at a Postgres connection for concurrent access."
        )

    def _connect(self) -> Any:
        import duckdb
        import duckdb_engine
        import sqlalchemy

        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # The config duckdb_engine (the Astro SDK's path) opens the file with: DuckDB refuses a
        # second connection to one file in one process with another config.
        user_agent = f"duckdb_engine/{duckdb_engine.__version__}(sqlalchemy/{sqlalchemy.__version__})"
        return duckdb.connect(self.path, config={"custom_user_agent": user_agent})

    def _begin(self, connection: Any) -> Any:
        # A DuckDB connection executes statements itself; its cursor() would open a second connection.
        connection.begin()
        return connection

    def _stage(self, cursor: Any, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
        import pandas as pd

        # DuckDB scans a registered DataFrame in place: no SQL text, no row-by-row inserts.
        # dtype=object keeps None as NULL (a float column would turn it into NaN).
        name = f"staged_{table}"
        cursor.register(name, pd.DataFrame(list(rows), columns=list(columns), dtype=object))
        return name
