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
    # One writer at a time through that pool: few large batches, so the per-batch cost (a task,
    # opening the file) is paid rarely and each insert runs near DuckDB's one-shot bulk speed.
    register_batch_size = 50_000
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
        import pyarrow as pa

        # DuckDB scans a registered Arrow table in place, column by column: no SQL text, no
        # row-by-row inserts, and no object-dtype DataFrame to convert. None stays NULL.
        name = f"staged_{table}"
        values = list(zip(*rows, strict=True))
        cursor.register(name, pa.table({column: pa.array(values[i]) for i, column in enumerate(columns)}))
        return name
