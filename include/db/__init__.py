"""The registry database behind MRI_DB_CONN_ID, picked by the connection's conn_type.

A new backend is a new module with a :class:`RegistryDatabase` subclass and one line in
``BACKENDS``; nothing else in the project names a backend.
"""

from __future__ import annotations

from include.db.base import DatabaseUnavailableError, RegistryDatabase
from include.db.duckdb import DuckDBDatabase
from include.db.postgres import PostgresDatabase

BACKENDS: dict[str, type[RegistryDatabase]] = {cls.conn_type: cls for cls in (DuckDBDatabase, PostgresDatabase)}

__all__ = ["BACKENDS", "DatabaseUnavailableError", "RegistryDatabase", "get_database"]


def get_database(conn_id: str | None = None) -> RegistryDatabase:
    """Return the backend for ``conn_id`` (default: MRI_DB_CONN_ID). Call it at run time, not parse time.

    :param conn_id: an Airflow connection id; defaults to the configured MRI_DB_CONN_ID.
    """
    from include.config import settings
    from include.wiring.compat import AirflowNotFoundException, BaseHook

    conn_id = conn_id or settings().db_conn_id
    try:
        connection = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise DatabaseUnavailableError(
            f"MRI_DB_CONN_ID {conn_id!r} is not a defined Airflow connection. Define it "
            f"(AIRFLOW_CONN_{conn_id.upper()} or airflow_settings.yaml), or point AIRFLOW_VAR_MRI_DB_CONN_ID "
            "at 'mri_db' (DuckDB) or 'mri_pg' (Postgres)."
        ) from None
    backend = BACKENDS.get(connection.conn_type)
    if backend is None:
        raise DatabaseUnavailableError(
            f"MRI_DB_CONN_ID {conn_id!r} has conn_type {connection.conn_type!r}; supported: "
            f"{', '.join(sorted(BACKENDS))}. Point AIRFLOW_VAR_MRI_DB_CONN_ID at one of those."
        )
    return backend(conn_id, connection)
