"""Apply ``migrations/NNNN_<what>.sql`` in order, once each, recorded in ``schema_migrations``.

A small runner instead of Alembic: the schema is plain DDL that DuckDB and PostgreSQL both
accept, so there is nothing for an ORM layer to translate, and Alembic's DuckDB support
(ALTER forms, SERIAL for integer keys) would be the riskiest part of it. Each file runs in one
transaction with its version row, so a failed migration leaves nothing half applied.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from include.config import MIGRATIONS_DIR
from include.db.base import RegistryDatabase
from include.db.queries import sql_file

log = logging.getLogger(__name__)

FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    """The migrations folder or the recorded history is inconsistent."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Read the migration files, in version order.

    :param directory: the folder holding ``NNNN_<what>.sql`` files.
    """
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = FILE_NAME.match(path.name)
        if not match:
            raise MigrationError(
                f"{path.name}: migration files are named NNNN_<lowercase_words>.sql, e.g. 0002_add_x.sql"
            )
        migrations.append(Migration(int(match[1]), match[2], path.read_text()))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"Two migration files share a version number in {directory}: {versions}")
    return migrations


def apply_migrations(db: RegistryDatabase, directory: Path = MIGRATIONS_DIR) -> list[int]:
    """Apply every migration not yet recorded; return the versions applied now (empty if none).

    :param db: the registry database.
    :param directory: the folder holding the migration files.
    """
    applied_now = []
    for migration in discover(directory):
        with db.transaction() as cursor:
            db.lock_for_migrations(cursor)
            cursor.execute(sql_file("create_schema_migrations.sql"))
            cursor.execute(
                f"SELECT checksum FROM schema_migrations WHERE version = {db.placeholder}", (migration.version,)
            )
            row = cursor.fetchone()
            if row is not None:
                if row[0] != migration.checksum:
                    raise MigrationError(
                        f"Migration {migration.version:04d}_{migration.name} was edited after it was applied to "
                        f"{db.describe()}. Never edit an applied migration; revert the file and add the next one."
                    )
                continue
            cursor.execute(migration.sql)
            cursor.execute(
                f"INSERT INTO schema_migrations (version, name, checksum) VALUES ({', '.join([db.placeholder] * 3)})",
                (migration.version, migration.name, migration.checksum),
            )
        log.info("Applied migration %04d_%s to %s", migration.version, migration.name, db.describe())
        applied_now.append(migration.version)
    return applied_now
