"""The interface every registry backend implements: connect, run a transaction, size the pool.

Backend facts are class attributes, overridden in one module per backend (the Astro SDK's
``databases/`` split). DAGs and tasks call these methods and never branch on the backend.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any, ClassVar

from include.db import queries

if TYPE_CHECKING:  # the SDK's Connection on Airflow 3, the model on Airflow 2: the same fields
    from airflow.models.connection import Connection

# Table and column names come from code constants, never from data; this is the check that they do.
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


def checked_identifiers(*names: str) -> None:
    """Raise unless every name is a plain SQL identifier (a raise, not an assert: ``python -O``
    strips asserts, and this check stands between a name and the SQL text)."""
    bad = [name for name in names if not IDENTIFIER.match(name)]
    if bad:
        raise ValueError(f"not plain SQL identifiers: {bad}; table and column names come from code constants")


class DatabaseUnavailableError(RuntimeError):
    """The registry database named by MRI_DB_CONN_ID cannot be reached; the message says why and what to do."""


class RegistryDatabase(ABC):
    """A relational store for the registry tables, reached through one Airflow connection.

    :param conn_id: the Airflow connection id (the value of MRI_DB_CONN_ID).
    :param connection: the resolved Airflow connection.
    """

    # The Airflow conn_type this backend serves.
    conn_type: ClassVar[str]
    # Slots of the pool every task that opens the database runs in: 1 serialises access to an
    # embedded file, a large number lets a server take parallel writers.
    pool_slots: ClassVar[int]
    # Files per mapped register_batch task unless MRI_REGISTER_BATCH_SIZE says otherwise: where
    # one writer runs at a time, a batch's fixed cost (a task, a file open) buys nothing, so the
    # batches are large; where writers run in parallel, smaller batches spread the work.
    register_batch_size: ClassVar[int]
    # The DB-API marker for a bound value in this driver.
    placeholder: ClassVar[str]

    def __init__(self, conn_id: str, connection: Connection):
        self.conn_id = conn_id
        self.connection = connection

    @abstractmethod
    def describe(self) -> str:
        """Where the database is, for messages (a file path, host:port/db)."""

    @abstractmethod
    def _connect(self) -> Any:
        """Open a DB-API connection; errors are translated by :meth:`transaction`."""

    @abstractmethod
    def _begin(self, connection: Any) -> Any:
        """Start a transaction on ``connection`` and return the object to execute statements on."""

    @abstractmethod
    def _stage(self, cursor: Any, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
        """Make ``rows`` (for ``table``) readable as a relation in this transaction, by the
        backend's fastest bulk path; return the relation's name. Values travel as data, never
        as SQL text."""

    def insert_new_rows(
        self, cursor: Any, table: str, columns: Sequence[str], key: str | tuple[str, ...], rows: Sequence[Sequence[Any]]
    ) -> None:
        """Insert the ``rows`` whose ``key`` is not in ``table`` yet; duplicates within ``rows``
        keep the first. Idempotent, and safe with concurrent writers (ON CONFLICT DO NOTHING):
        rows go in key order, so two writers sharing keys wait on each other in the same order
        and never deadlock.

        :param cursor: the cursor of the caller's transaction.
        :param table: target table (a code constant).
        :param columns: the columns of each row, in order (code constants).
        :param key: the unique column (or columns of a composite key) deciding what is new.
        :param rows: the values.
        """
        key_columns = (key,) if isinstance(key, str) else tuple(key)
        checked_identifiers(table, *key_columns, *columns)
        # One row per key before it reaches SQL: an INSERT that meets its own key twice is an
        # error on some engines, and "first wins" is then the same on every backend.
        key_indexes = [list(columns).index(name) for name in key_columns]
        first_per_key: dict[Any, Sequence[Any]] = {}
        for row in rows:
            first_per_key.setdefault(tuple(row[i] for i in key_indexes), row)
        if not first_per_key:
            return
        ordered = [first_per_key[k] for k in sorted(first_per_key)]
        self._insert_unique_rows(cursor, table, columns, ", ".join(key_columns), ordered)

    def _insert_unique_rows(
        self, cursor: Any, table: str, columns: Sequence[str], key: str, rows: Sequence[Sequence[Any]]
    ) -> None:
        """Stage the rows, then insert those whose key (``a`` or ``a, b``) is new. Backends may add a
        faster path."""
        staged = self._stage(cursor, table, columns, rows)
        names = ", ".join(columns)
        # ORDER BY: the staged rows reach the table's unique index in key order too (see insert_new_rows).
        cursor.execute(
            f"INSERT INTO {table} ({names}) SELECT {names} FROM {staged} ORDER BY {key} ON CONFLICT ({key}) DO NOTHING"
        )

    def explain_open_error(self, err: Exception) -> str | None:
        """A backend's own message for a failure to open the database, or None for the generic one."""
        return None

    def lock_for_migrations(self, cursor: Any) -> None:  # noqa: B027 (an optional hook, empty on purpose)
        """Keep concurrent migration runners apart; nothing to do where the pool already does."""

    def lock_for_promotion(self, cursor: Any) -> None:  # noqa: B027 (an optional hook, empty on purpose)
        """Make promotions wait for each other until the commit, so each reads the production the
        previous one committed; nothing to do where one writer runs at a time (DuckDB: the file lock
        and the 1-slot pool)."""

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """Yield a cursor inside one transaction: committed on success, rolled back on any error."""
        try:
            connection = self._connect()
        except Exception as err:
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise DatabaseUnavailableError(
                self.explain_open_error(err)
                or f"MRI_DB_CONN_ID {self.conn_id!r} ({self.conn_type} at {self.describe()}) cannot be opened: "
                f"{first_line}. Start the database or fix the connection, or point "
                "AIRFLOW_VAR_MRI_DB_CONN_ID at another connection."
            ) from err
        try:
            cursor = self._begin(connection)
            yield cursor
            connection.commit()
        except BaseException:
            # A server that went away takes the transaction with it: rolling back then fails
            # too, and that second error must not hide the first one from the task's log.
            with suppress(Exception):
                connection.rollback()
            raise
        finally:
            with suppress(Exception):
                connection.close()

    def fetch_all(self, sql: str, parameters: tuple | list | None = None) -> list[tuple]:
        """Run one query in its own transaction and return all rows.

        :param sql: the query, with ``placeholder`` markers for values.
        :param parameters: the bound values; None for a query without markers (psycopg2 would
            read a literal ``%`` as a marker otherwise).
        """
        with self.transaction() as cursor:
            cursor.execute(sql, parameters)
            return cursor.fetchall()

    def statement(self, sql_file: str, **parameters: Any) -> tuple[str, list[Any]]:
        """The statement of ``sql/<sql_file>`` for this backend and its values, for ``execute`` or
        :meth:`fetch_all`: ``db.fetch_all(*db.statement("latest_result.sql", role="baseline", ...))``.

        :param parameters: the values of the file's ``{{ name }}`` markers.
        """
        return queries.bound(queries.sql_file(sql_file), parameters, self.placeholder)

    def fetch_records(self, sql: str, parameters: tuple | list | None = None) -> list[dict[str, Any]]:
        """Like :meth:`fetch_all`, each row a dict keyed by the query's column names."""
        with self.transaction() as cursor:
            cursor.execute(sql, parameters)
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(conn_id={self.conn_id!r}, at={self.describe()!r})"
