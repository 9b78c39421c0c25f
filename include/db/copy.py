"""``python -m include.db.copy --from mri_db --to mri_pg`` (``make copy-registry``): move the registry's
history to another backend, e.g. from the DuckDB file to PostgreSQL when one writer is not enough.

Invariants:
- Every table a migration creates is copied (images, image_files, quality_runs, models,
  model_results, and whatever later migrations add); views and Airflow's or the Astro SDK's own
  tables are not. The target is migrated first, so it has every column the source has.
- The merge keeps the registry's invariants, or nothing is written (checked before the target is
  even migrated): at most one model in stage production, and no model whose stage differs between
  source and target (the target's row would be kept, so the source's stage would be silently lost).
- Only rows whose primary key is not in the target yet are written (through the backend layer's
  ``insert_new_rows`` where the key is one column): a second run writes nothing, and rows the
  target already has are kept as they are, never overwritten.
- Verified per table: the target holds a row with the same values for every source row, shown by
  row counts and an order-independent checksum of the source rows and of their matches in the target.
- The source is only read.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from include.db import RegistryDatabase, get_database
from include.db.base import checked_identifiers
from include.db.migrations import apply_migrations, discover

log = logging.getLogger(__name__)

# Rows per target transaction: bounded memory for 100k-row tables, few round trips.
CHUNK_ROWS = 10_000
CREATED_TABLE = re.compile(r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?([a-z_][a-z0-9_]*)", re.IGNORECASE)


class CopyError(RuntimeError):
    """The copy cannot be made or did not verify; the message names the table and what to do."""


@dataclass(frozen=True)
class TableCopy:
    table: str
    source_rows: int
    copied: int
    target_rows: int
    source_checksum: str
    target_checksum: str  # of the target's rows with the source's keys

    @property
    def verified(self) -> bool:
        return self.source_checksum == self.target_checksum


def registry_tables() -> list[str]:
    """The tables the migrations create, in the order they first appear."""
    names = [name.lower() for m in discover() for name in CREATED_TABLE.findall(m.sql)]
    return [name for name in dict.fromkeys(names) if name != "schema_migrations"]


def canonical(value: Any, is_json: bool) -> Any:
    """A value as both backends read it back: JSON as parsed data, times in UTC, exact numbers."""
    if value is None:
        return None
    if is_json:
        return json.loads(value) if isinstance(value, str) else value
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC)
    if isinstance(value, Decimal):
        return float(value)
    return value


def row_digest(row: Sequence[Any]) -> int:
    text = json.dumps(list(row), sort_keys=True, separators=(",", ":"), default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:16], "big")


def checksum(digests: Iterator[int]) -> str:
    """Order-independent: the sum of the rows' digests (a sum, unlike XOR, counts duplicates)."""
    return f"{sum(digests) % (1 << 128):032x}"


class TableReader:
    """The columns, key and canonical rows of one table of one database."""

    def __init__(self, db: RegistryDatabase, table: str):
        self.db, self.table = db, table
        columns = db.fetch_all(*db.statement("table_columns.sql", table=table))
        self.columns = [name for name, _ in columns]
        self.json_columns = {name for name, data_type in columns if data_type.lower() in ("json", "jsonb")}
        key = [name for (name,) in db.fetch_all(*db.statement("primary_key.sql", table=table))]
        # A table without a primary key: a row is its own key.
        self.key = key or self.columns
        checked_identifiers(table, *self.columns)

    @property
    def exists(self) -> bool:
        return bool(self.columns)

    def rows(self, columns: Sequence[str]) -> list[tuple]:
        """All rows, ``columns`` in that order, values canonical."""
        flags = [name in self.json_columns for name in columns]
        raw = self.db.fetch_all(f"SELECT {', '.join(columns)} FROM {self.table}")
        return [tuple(canonical(v, is_json) for v, is_json in zip(row, flags, strict=True)) for row in raw]


def for_writing(value: Any) -> Any:
    """JSON values go back as JSON text: both backends parse it into their JSON column."""
    return json.dumps(value) if isinstance(value, dict | list) else value


def copy_table(source: RegistryDatabase, target: RegistryDatabase, table: str) -> TableCopy | None:
    """Copy the rows of ``table`` the target lacks, then verify; None if the source has no such table."""
    reader = TableReader(source, table)
    if not reader.exists:
        return None
    writer = TableReader(target, table)
    missing = [name for name in reader.columns if name not in writer.columns]
    if missing:
        raise CopyError(f"{table}: the target has no columns {missing}; is the source's schema newer than migrations/?")
    columns, key = reader.columns, reader.key
    key_index = [columns.index(name) for name in key]
    source_rows = reader.rows(columns)
    target_by_key = {tuple(row[i] for i in key_index): row for row in writer.rows(columns)}
    new = [row for row in source_rows if tuple(row[i] for i in key_index) not in target_by_key]
    for start in range(0, len(new), CHUNK_ROWS):
        chunk = [tuple(map(for_writing, row)) for row in new[start : start + CHUNK_ROWS]]
        with target.transaction() as cursor:
            if len(key) == 1:
                target.insert_new_rows(cursor, table, columns, key[0], chunk)
            else:
                # A composite key has no one-column ON CONFLICT target; the rows were filtered
                # against the target above, and one copy runs at a time.
                marks = ", ".join([target.placeholder] * len(columns))
                cursor.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", chunk)
    after = {tuple(row[i] for i in key_index): row for row in writer.rows(columns)}
    matched = [after[k] for k in (tuple(row[i] for i in key_index) for row in source_rows) if k in after]
    return TableCopy(
        table=table,
        source_rows=len(source_rows),
        copied=len(new),
        target_rows=len(after),
        source_checksum=checksum(map(row_digest, source_rows)),
        target_checksum=checksum(map(row_digest, matched)),
    )


def model_stages(db: RegistryDatabase) -> dict[str, str]:
    """``model_id -> stage`` of every model in ``db``; empty where there is no ``models`` table yet."""
    if not TableReader(db, "models").exists:
        return {}
    return dict(db.fetch_all("SELECT model_id, stage FROM models"))


def merge_conflicts(source: dict[str, str], target: dict[str, str]) -> list[str]:
    """What copying models with stages ``source`` into ``target`` would break, one sentence each.

    The copy keeps the target's row where both have a model, so the merged stages are the target's
    plus the source's models the target lacks.
    """
    problems = []
    differ = sorted(model for model in source.keys() & target.keys() if source[model] != target[model])
    if differ:
        problems.append(
            "models: stages differ for "
            + ", ".join(f"{model} ({source[model]} in FROM, {target[model]} in TO)" for model in differ)
        )
    merged = {**source, **target}
    production = sorted(model for model, stage in merged.items() if stage == "production")
    if len(production) > 1:
        where = ", ".join(
            f"{model} ({' and '.join(side for side, stages in (('FROM', source), ('TO', target)) if model in stages)})"
            for model in production
        )
        problems.append(f"models: {len(production)} models would be in stage production: {where}")
    return problems


def check_merge(source: RegistryDatabase, target: RegistryDatabase) -> None:
    """Raise CopyError naming each broken invariant, before anything is written to ``target``."""
    problems = merge_conflicts(model_stages(source), model_stages(target))
    if problems:
        raise CopyError(
            f"Copying {source.conn_id!r} into {target.conn_id!r} would break the registry: {'; '.join(problems)}. "
            "Nothing was written. A registry serves one production model, and promotion (deploy_best_model) "
            "is what changes stages: copy into an empty registry, or set the stages on one side by hand "
            "('archived' for all but one production model) and copy again."
        )


def copy_registry(source_conn_id: str, target_conn_id: str) -> list[TableCopy]:
    """Check the merge, migrate the target, copy every registry table the source has, and verify each.

    :param source_conn_id: Airflow connection of the registry to copy from (read only).
    :param target_conn_id: Airflow connection of the registry to copy into.
    """
    if source_conn_id == target_conn_id:
        raise CopyError(f"FROM and TO are both {source_conn_id!r}; name two registry connections.")
    source, target = get_database(source_conn_id), get_database(target_conn_id)
    check_merge(source, target)
    applied = apply_migrations(target)
    log.info("Copying %r -> %r (migrations applied to the target now: %s)", source, target, applied or "none")
    results = [result for table in registry_tables() if (result := copy_table(source, target, table))]
    if not results:
        # Opening a DuckDB path that does not exist creates an empty file: say so rather than copy nothing.
        raise CopyError(
            f"{source_conn_id!r} ({source.describe()}) has none of the registry tables {registry_tables()}; "
            "is FROM the connection of the registry you used so far?"
        )
    return results


def report(results: Sequence[TableCopy]) -> list[str]:
    """The copy as a Markdown table."""
    lines = [
        "| table | source rows | copied now | target rows | checksum (source) | target matches |",
        "|---|---:|---:|---:|---|---|",
    ]
    for r in results:
        match = "yes" if r.verified else f"NO ({r.target_checksum[:12]})"
        lines.append(
            f"| {r.table} | {r.source_rows} | {r.copied} | {r.target_rows} | {r.source_checksum[:12]} | {match} |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m include.db.copy", description=__doc__)
    parser.add_argument("--from", dest="source", required=True, help="connection id to copy from, e.g. mri_db")
    parser.add_argument("--to", dest="target", required=True, help="connection id to copy into, e.g. mri_pg")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        results = copy_registry(args.source, args.target)
    except CopyError as err:
        log.error("%s", err)
        return 1
    for line in report(results):
        log.info("%s", line)
    differ = [r.table for r in results if not r.verified]
    if differ:
        log.error(
            "The target holds other values under some of the source's keys in %s (kept, not overwritten). "
            "Compare those rows before pointing AIRFLOW_VAR_MRI_DB_CONN_ID at %r.",
            differ,
            args.target,
        )
        return 1
    log.info("Every source row is in %r. Point AIRFLOW_VAR_MRI_DB_CONN_ID at it.", args.target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
