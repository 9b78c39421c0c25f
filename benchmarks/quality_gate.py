"""The quality gate on a 100,000-row snapshot, on DuckDB and on Postgres, and the Data Docs build
time apart; then the GX SQL data source on Postgres against the DataFrame path. Prints Markdown.

    python -m benchmarks.quality_gate --rows 100000 --test-rows 20000

The registry gets N registered train images (half per label) and M test images, written by
`write_records` as the preprocess DAG writes them, each with a pixel hash and a random 256-bit
perceptual hash (real MRI slices have hashes closer together, so more candidate pairs: see
include/quality/near_duplicates.py). `run_gate` then runs on train as the gate task runs it, each
stage timed by wrapping what it calls: read (the snapshot's rows and the split's measures, leakage,
label conflicts and near-duplicates against the M test images), validate (both suites in the file
data context), freeze (`freeze_staged`: the N rows read, from the transaction's temporary table into
`snapshot_images` by one INSERT ... SELECT), record (`quality_runs`), the rest of the whole call
(the commit of that one transaction, where the freeze's rows reach the disk, and logging), and Data
Docs (render the two pages, rewrite the index). Each repetition starts from an empty
`snapshot_images`, so every freeze is a first one. Great Expectations' import is paid once per
worker process and reported on its own line.

The SQL comparison runs the same row-level suite (`images_<split>`) in an ephemeral context: once
on a GX Postgres query asset, once on a DataFrame read through the backend layer.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import ExitStack
from unittest import mock

STAGES = ("read", "validate", "freeze", "record", "commit and the rest")
# The row-level suite on the SQL side reads the same rows the gate reads (constants, no data).
SQL_QUERY = (
    "SELECT content_hash, label, uri, split, width, height, mode FROM images "
    "WHERE split = 'train' AND status = 'registered'"
)


def fill_registry(conn_id: str, rows: int, test_rows: int):
    from include.db import get_database
    from include.db.migrations import apply_migrations
    from include.registry.records import ImageRecord, write_records

    db = get_database(conn_id)
    apply_migrations(db)
    records = [
        ImageRecord(
            f"{i:064x}",
            f"raw/{split}/{label} ({i}).jpg",
            split,
            label,
            256,
            256,
            "L",
            9000,
            "registered",
            None,
            "b",
            f"{i:064x}"[::-1],
            os.urandom(32).hex(),
        )
        for i in range(rows + test_rows)
        for label, split in [(("glioma", "meningioma")[i % 2], "train" if i < rows else "test")]
    ]
    for start in range(0, rows + test_rows, 10_000):
        write_records(db, records[start : start + 10_000], "bench")
    return db


def timed_gate(db, repeats: int, rows: int) -> tuple[dict[str, float], float]:
    """Median seconds per gate stage over ``repeats`` runs, and the median Data Docs time."""
    from include.quality import docs, gate

    spent: dict[str, list[float]] = defaultdict(list)

    def timing(stage, function):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[stage][-1] += time.perf_counter() - start

        return wrapper

    targets = {
        "read": (gate, "read_split"),
        "validate": (docs, "validate_frame"),
        "freeze": (gate, "freeze_staged"),
        "record": (gate, "record_gate_run"),
        "docs": (docs, "build_pages"),
        "index": (docs, "record_and_index"),
        "whole": (gate, "run_gate"),
    }
    with ExitStack() as stack:
        for stage, (module, name) in targets.items():
            stack.enter_context(mock.patch.object(module, name, timing(stage, getattr(module, name))))
        for repeat in range(repeats):
            with db.transaction() as cursor:
                cursor.execute("DELETE FROM snapshot_images")
                cursor.execute("DELETE FROM quality_runs")
            for stage in targets:
                spent[stage].append(0.0)
            outcome = gate.run_gate(db, "train", f"bench_{repeat}")
            assert outcome.success and outcome.images == rows, outcome.message()
    # What no stage holds: the commit (the freeze's rows reach the disk then), logging.
    spent["commit and the rest"] = [
        whole - sum(spent[stage][run] for stage in targets if stage != "whole")
        for run, whole in enumerate(spent["whole"])
    ]
    medians = {stage: statistics.median(values) for stage, values in spent.items()}
    return {s: medians[s] for s in STAGES}, medians["docs"] + medians["index"]


def images_suite_seconds(db, sql_url: str | None, repeats: int) -> float:
    """Median seconds to validate the row-level suite: on a GX SQL query asset when ``sql_url``
    is given, else on the DataFrame the backend layer reads (reading included)."""
    import great_expectations as gx

    from include.config import settings
    from include.quality.frames import read_split
    from include.quality.suites import image_expectations

    context = gx.get_context(mode="ephemeral")
    if sql_url:
        asset = context.data_sources.add_postgres("pg", connection_string=sql_url).add_query_asset("q", SQL_QUERY)
    else:
        asset = context.data_sources.add_pandas("frames").add_dataframe_asset("q")
    batch = (
        asset.add_batch_definition_whole_table("whole") if sql_url else asset.add_batch_definition_whole_dataframe("w")
    )
    suite = context.suites.add(gx.ExpectationSuite(name="images", expectations=image_expectations(settings())))
    definition = context.validation_definitions.add(gx.ValidationDefinition(name="images", data=batch, suite=suite))
    result_format = {"result_format": "SUMMARY", "unexpected_index_column_names": ["content_hash"]}
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        parameters = None
        if not sql_url:
            with db.transaction() as cursor:
                parameters = {"dataframe": read_split(cursor, db.placeholder, "train", settings()).images}
        result = definition.run(batch_parameters=parameters, result_format=result_format)
        seconds.append(time.perf_counter() - start)
        assert result.success, [r.expectation_config.type for r in result.results if not r.success]
    return statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="train images: the snapshot the gate validates")
    parser.add_argument("--test-rows", type=int, default=20_000, help="test images to compare with")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        # Airflow reads its config at import: set it first. Only this run's MRI_* settings apply.
        os.environ.setdefault("AIRFLOW_HOME", f"{tmp}/airflow")
        os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        for name in [n for n in os.environ if n.startswith(("MRI_", "AIRFLOW_VAR_MRI_"))]:
            del os.environ[name]
        os.environ["MRI_QUALITY_DIR"] = f"{tmp}/quality"
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)

        start = time.perf_counter()
        import great_expectations  # noqa: F401  (paid once per worker process, reported apart)

        gx_import = time.perf_counter() - start

        from tests.support.postgres import running_postgres

        with running_postgres() as server:
            os.environ["AIRFLOW_CONN_BENCH_PG"] = server.airflow_conn()
            os.environ["AIRFLOW_CONN_BENCH_DUCKDB"] = f'{{"conn_type": "duckdb", "host": "{tmp}/bench.duckdb"}}'
            backends = {"DuckDB": "bench_duckdb", "Postgres": "bench_pg"}
            gates, docs_seconds, suite = {}, {}, {}
            for name, conn_id in backends.items():
                db = fill_registry(conn_id, args.rows, args.test_rows)
                gates[name], docs_seconds[name] = timed_gate(db, args.repeats, args.rows)
                if name == "Postgres":
                    suite["GX SQL data source (query asset)"] = images_suite_seconds(db, server.url, args.repeats)
                    suite["DataFrame via the backend layer (read included)"] = images_suite_seconds(
                        db, None, args.repeats
                    )

    rows = args.rows
    print(
        f"\nQuality gate on a {rows:,}-row train snapshot against {args.test_rows:,} test images, median of "
        f"{args.repeats}, {os.cpu_count()} CPUs\n"
    )
    print("| stage | " + " | ".join(f"{n} s | {n} rows/s" for n in backends) + " |")
    print("|---|" + "---:|---:|" * len(backends))
    for stage in (*STAGES, "gate total"):
        cells = []
        for n in backends:
            seconds = sum(gates[n].values()) if stage == "gate total" else gates[n][stage]
            cells.append(f"{seconds:.2f} | {rows / seconds:,.0f}")
        print(f"| {stage} | " + " | ".join(cells) + " |")
    print("| gate total / 5 s budget | " + " | ".join(f"{sum(gates[n].values()) / 5:.2f} | " for n in backends) + " |")
    print("| Data Docs (2 pages + index), apart | " + " | ".join(f"{docs_seconds[n]:.2f} | " for n in backends) + " |")
    print(f"\nGreat Expectations import, once per worker process: {gx_import:.1f} s\n")

    reference = suite["DataFrame via the backend layer (read included)"]
    print(f"Row-level suite on Postgres, {rows:,} rows, median of {args.repeats}:\n")
    print("| path | s | rows/s | × DataFrame path |")
    print("|---|---:|---:|---:|")
    for path, seconds in suite.items():
        print(f"| {path} | {seconds:.2f} | {rows / seconds:,.0f} | {seconds / reference:.2f} |")

    from benchmarks.headline import record

    record(
        "quality_gate",
        [
            (f"gate on {rows:,} rows, {n}: total / 5 s budget", f"{sum(gates[n].values()) / 5:.2f}", "≤ 1")
            for n in backends
        ]
        + [
            (f"Data Docs build, {n}, share of the gate", f"{docs_seconds[n] / sum(gates[n].values()):.2f}", "-")
            for n in backends
        ]
        + [
            (
                "GX SQL data source / DataFrame path, Postgres",
                f"{suite['GX SQL data source (query asset)'] / reference:.2f}",
                "-",
            )
        ],
    )


if __name__ == "__main__":
    main()
