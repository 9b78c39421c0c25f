"""Synthetic registry rows and real concurrent writer processes, for the write-path tests and the
benchmark (no image files needed)."""

from __future__ import annotations

import importlib
import multiprocessing
import time

from include.registry.records import ImageRecord


def synthetic_records(start: int, stop: int, run_id: str = "run-1", split: str = "train") -> list[ImageRecord]:
    """Rows ``start``..``stop - 1``: distinct content hashes and uris, registered."""
    return [
        ImageRecord(
            content_hash=f"{i:064x}",
            uri=f"s3://bucket/raw/{split}/glioma ({i}).jpg",
            split=split,
            label="glioma",
            width=256,
            height=256,
            mode="L",
            bytes=20_000 + i,
            status="registered",
            reason=None,
            first_seen_run_id=run_id,
        )
        for i in range(start, stop)
    ]


def _write_range(conn_id: str, start: int, stop: int, batch: int, run_id: str, barrier, spans) -> None:
    """One writer process: rows start..stop in batches, one transaction and connection each, as a
    mapped register_batch task writes them."""
    from include.db import get_database
    from include.registry.records import write_records

    # Warm up (driver and hook imports, first connection) before the start line: that is task
    # start-up, not the write path. pandas too: a task process has it from parsing the DAG file,
    # and pyarrow (DuckDB's staging) imports it on first use; both once per process.
    for module in ("pandas", "pyarrow"):
        importlib.import_module(module)
    get_database(conn_id).fetch_all("SELECT 1")
    barrier.wait()
    began = time.monotonic()
    for first in range(start, stop, batch):
        write_records(get_database(conn_id), synthetic_records(first, min(first + batch, stop), run_id), run_id)
    spans.put((began, time.monotonic()))


def run_writers(conn_id: str, ranges: list[tuple[int, int]], batch: int, run_id: str = "run-1"):
    """Write each (start, stop) range from its own process, all at once.

    :return: the processes' exit codes and their (start, end) monotonic times.
    """
    # spawn, not fork: a fork of a process holding DuckDB, pyarrow and Airflow threads can crash
    # in the child (seen as SIGSEGV during garbage collection).
    context = multiprocessing.get_context("spawn")
    barrier, spans = context.Barrier(len(ranges)), context.Queue()
    processes = [
        context.Process(target=_write_range, args=(conn_id, start, stop, batch, run_id, barrier, spans))
        for start, stop in ranges
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
    exit_codes = [process.exitcode for process in processes]
    return exit_codes, [spans.get(timeout=5) for code in exit_codes if code == 0]
