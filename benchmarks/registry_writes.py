"""Registry write throughput: the mapped writer tasks' path on Postgres (1-8 writers) and on DuckDB
through its 1-slot pool, against each engine's own bulk path for the same rows: a raw psycopg2
COPY, and DuckDB's one-shot insert (an Arrow table + `INSERT ... SELECT ... ON CONFLICT DO
NOTHING`). Prints a Markdown table and records the headline ratios (benchmarks/headline.py).

    make bench    # or: python -m benchmarks.registry_writes --rows 100000

Each writer is its own process and writes its share in batches, one transaction and one
connection per batch, exactly as a mapped `register_batch` task does (its scheduling by Airflow
is not measured). The batch size is the backend class's `register_batch_size` (what a run uses
when MRI_REGISTER_BATCH_SIZE is unset) unless --batch sets one for all. The Astro SDK row
measures the alternative the registry did not take: DataFrame -> temp table -> `merge_table` per
batch.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def synthetic_records(start: int, stop: int):
    # Imported here, like Airflow everywhere in this module: callers set AIRFLOW_HOME first.
    from tests.support.records import synthetic_records as records

    return records(start, stop, run_id="bench")


def fresh_database(conn_id: str):
    from include.db import get_database
    from include.db.migrations import apply_migrations

    db = get_database(conn_id)
    apply_migrations(db)
    with db.transaction() as cursor:
        cursor.execute("DELETE FROM image_files")
        cursor.execute("DELETE FROM images")
    return db


def registry_path(conn_id: str, rows: int, writers: int, batch: int) -> float:
    """Rows per second of ``writers`` processes writing ``rows`` through `write_records`, from
    the moment they all start to the moment the last one ends."""
    from tests.support.records import run_writers

    db = fresh_database(conn_id)
    per_writer = -(-rows // writers)
    ranges = [(w * per_writer, min(rows, (w + 1) * per_writer)) for w in range(writers)]
    exit_codes, spans = run_writers(conn_id, ranges, batch, run_id="bench")
    assert exit_codes == [0] * writers, exit_codes
    seconds = max(end for _, end in spans) - min(start for start, _ in spans)
    [(count,)] = db.fetch_all("SELECT COUNT(*) FROM images")
    assert count == rows, f"wrote {count} of {rows} rows"
    return rows / seconds


def raw_copy(url: str, rows: int) -> float:
    """Rows per second of plain psycopg2 COPYs of the same rows into empty copies of `images` and
    `image_files` (indexes included), one connection, one transaction: the ceiling for this data."""
    import psycopg2

    from include.db.postgres import copy_text_field
    from include.registry.records import FILE_COLUMNS, IMAGE_COLUMNS

    records = synthetic_records(0, rows)
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        for table in ("images", "image_files"):
            cur.execute(
                f"DROP TABLE IF EXISTS reference_{table}; CREATE TABLE reference_{table} (LIKE {table} INCLUDING ALL)"
            )
        began = time.perf_counter()
        for table, columns, values in (
            ("images", IMAGE_COLUMNS, records),
            ("image_files", FILE_COLUMNS, [(r.uri, r.content_hash, r.split, "bench") for r in records]),
        ):
            text = "".join("\t".join(map(copy_text_field, row)) + "\n" for row in values)
            cur.copy_expert(f"COPY reference_{table} ({', '.join(columns)}) FROM STDIN", io.StringIO(text))
        conn.commit()
        return rows / (time.perf_counter() - began)


def duckdb_native(conn_id: str, rows: int) -> float:
    """Rows per second of DuckDB's own one-shot bulk insert of the same rows into the emptied
    `images` and `image_files`: per table one Arrow table (built from the rows on the clock, as
    the registry path builds its own) and one `INSERT ... SELECT ... ON CONFLICT DO NOTHING`,
    one connection, one transaction. The ceiling the DuckDB registry path is held to."""
    import duckdb
    import pandas  # noqa: F401 (pyarrow imports it on first use: start-up, not the insert)
    import pyarrow as pa

    from include.registry.records import FILE_ROW_COLUMNS, IMAGE_COLUMNS

    db = fresh_database(conn_id)
    records = synthetic_records(0, rows)
    tables = (
        ("images", IMAGE_COLUMNS, "content_hash", records),
        (
            "image_files",
            FILE_ROW_COLUMNS,
            "uri",
            [(r.uri, r.content_hash, r.split, "bench", r.label, r.subject) for r in records],
        ),
    )
    connection = duckdb.connect(db.path)
    try:
        began = time.perf_counter()
        connection.begin()
        for table, columns, key, values in tables:
            by_column = list(zip(*values, strict=True))
            connection.register(f"native_{table}", pa.table({c: pa.array(by_column[i]) for i, c in enumerate(columns)}))
            names = ", ".join(columns)
            connection.execute(
                f"INSERT INTO {table} ({names}) SELECT {names} FROM native_{table} ON CONFLICT ({key}) DO NOTHING"
            )
        connection.commit()
        seconds = time.perf_counter() - began
        [(count,)] = connection.execute("SELECT COUNT(*) FROM images").fetchall()
    finally:
        connection.close()
    assert count == rows, f"wrote {count} of {rows} rows"
    return rows / seconds


def astro_merge_path(conn_id: str, rows: int, batch: int) -> float:
    """Rows per second of the Astro SDK way, one writer: per batch a DataFrame loaded into a temp
    table (Postgres: COPY; DuckDB: pandas to_sql) and `merge_table` into `images`."""
    import pandas as pd
    from astro.databases import create_database
    from astro.table import Table

    from include.registry.records import IMAGE_COLUMNS

    fresh_database(conn_id)
    began = time.perf_counter()
    for first in range(0, rows, batch):
        database = create_database(conn_id)
        frame = pd.DataFrame(synthetic_records(first, min(first + batch, rows)), columns=IMAGE_COLUMNS)
        staged = Table(conn_id=conn_id)
        database.load_pandas_dataframe_to_table(frame, staged)
        database.merge_table(
            staged, Table(name="images", conn_id=conn_id), {c: c for c in IMAGE_COLUMNS}, ["content_hash"], "ignore"
        )
        database.drop_table(staged)
    return rows / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=None, help="rows per batch; default: each backend's own")
    parser.add_argument("--astro-rows", type=int, default=20_000, help="rows for the slower Astro SDK path")
    args = parser.parse_args()

    from benchmarks.headline import record
    from include.db.duckdb import DuckDBDatabase
    from include.db.postgres import PostgresDatabase
    from tests.support.postgres import running_postgres

    pg_batch = args.batch or PostgresDatabase.register_batch_size
    duckdb_batch = args.batch or DuckDBDatabase.register_batch_size
    small = PostgresDatabase.register_batch_size
    with running_postgres() as server, tempfile.TemporaryDirectory() as tmp:
        os.environ["AIRFLOW_CONN_BENCH_PG"] = server.airflow_conn()
        os.environ["AIRFLOW_CONN_BENCH_DUCKDB"] = f'{{"conn_type": "duckdb", "host": "{tmp}/bench.duckdb"}}'
        results: list[tuple[str, float]] = []
        fresh_database("bench_pg")
        reference = raw_copy(server.url, args.rows)
        results.append(("raw psycopg2 COPY into both tables, 1 transaction (reference)", reference))
        for writers in (1, 2, 4, 8):
            results.append(
                (
                    f"Postgres, registry path, {writers} writer(s), batches of {pg_batch}",
                    registry_path("bench_pg", args.rows, writers, pg_batch),
                )
            )
        native = duckdb_native("bench_duckdb", args.rows)
        results.append(("DuckDB one-shot Arrow + INSERT ... ON CONFLICT into both tables (reference)", native))
        duckdb_pool = registry_path("bench_duckdb", args.rows, 1, duckdb_batch)
        results.append((f"DuckDB, registry path, 1-slot pool, batches of {duckdb_batch}", duckdb_pool))
        if duckdb_batch != small:
            results.append(
                (
                    f"DuckDB, registry path, 1-slot pool, batches of {small}",
                    registry_path("bench_duckdb", args.rows, 1, small),
                )
            )
        results.append(
            (
                "Postgres, Astro SDK dataframe + merge, 1 writer",
                astro_merge_path("bench_pg", args.astro_rows, pg_batch),
            )
        )
        results.append(
            (
                "DuckDB, Astro SDK dataframe + merge, 1 writer",
                astro_merge_path("bench_duckdb", args.astro_rows, pg_batch),
            )
        )

    best_pg = max(rate for name, rate in results if name.startswith("Postgres, registry"))
    print(f"\n{args.rows:,} rows (Astro SDK rows: {args.astro_rows:,}), {os.cpu_count()} CPUs\n")
    print("| write path | rows/s | × raw COPY | × DuckDB one-shot | × DuckDB pool |")
    print("|---|---:|---:|---:|---:|")
    for name, rate in results:
        print(f"| {name} | {rate:,.0f} | {rate / reference:.2f} | {rate / native:.2f} | {rate / duckdb_pool:.2f} |")
    print(
        f"\nBest Postgres registry path: {best_pg / reference:.2f} × raw COPY (goal ≥ 0.5). "
        f"DuckDB registry path: {duckdb_pool / native:.2f} × its one-shot bulk insert (goal ≥ 0.5)."
    )
    record(
        "registry_writes",
        [
            (
                "DuckDB registry path (1-slot pool) vs DuckDB one-shot Arrow insert",
                f"{duckdb_pool / native:.2f}×",
                "≥ 0.5",
            ),
            ("best Postgres registry path (1-8 writers) vs raw COPY", f"{best_pg / reference:.2f}×", "≥ 0.5"),
            ("best Postgres registry path vs DuckDB registry path", f"{best_pg / duckdb_pool:.2f}×", "-"),
        ],
    )


if __name__ == "__main__":
    main()
