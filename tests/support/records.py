"""Registry rows for tests: synthetic rows and real concurrent writer processes, for the write-path
tests and the benchmark (no image files needed); toy images registered and passed by a gate, for
the ML DAGs' tests."""

from __future__ import annotations

import hashlib
import importlib
import io
import multiprocessing
import time
from typing import NamedTuple

import numpy as np
from PIL import Image

from include.registry.records import ImageRecord, write_records
from include.registry.snapshots import take_snapshot


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


def toy_png(label: str, seed: int) -> bytes:
    """glioma: a bright patch in the top half; meningioma (or any other label): in the bottom half."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 40, (64, 64)).astype(np.uint8)
    row, column = int(rng.integers(4, 20)), int(rng.integers(10, 50))
    rows = slice(row, row + 12) if label == "glioma" else slice(52 - row, 64 - row)
    pixels[rows, column - 8 : column + 4] = 230
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


class GatedSplit(NamedTuple):
    snapshot_id: str
    keys: list[str]  # the storage keys of the images, in registration order


def register_and_gate(
    db, storage, split: str, per_class: int, first_seed: int, labels: tuple[str, ...] = ("glioma", "meningioma")
) -> GatedSplit:
    """Write toy images of ``labels`` to storage, register them, snapshot the split and record a passed gate.

    The n-th image of the i-th label has seed ``first_seed + n + 1000 * i``.
    """
    records, keys = [], []
    for number, label in enumerate(labels):
        for n in range(per_class):
            seed = first_seed + n + 1000 * number
            data, key = toy_png(label, seed), f"raw/{split}/{label} ({seed}).png"
            storage.write(key, data)
            keys.append(key)
            records.append(
                ImageRecord(
                    hashlib.sha256(data).hexdigest(),
                    storage.uri(key),
                    split,
                    label,
                    64,
                    64,
                    "L",
                    len(data),
                    "registered",
                    None,
                    "setup",
                )
            )
    write_records(db, records, "setup")
    snapshot = take_snapshot(db, split).snapshot_id
    p = db.placeholder
    with db.transaction() as cursor:
        cursor.execute(
            f"INSERT INTO quality_runs (suite, split, run_id, success, snapshot) VALUES ({p}, {p}, {p}, {p}, {p})",
            ("images", split, f"gate-{snapshot[:8]}", True, snapshot),
        )
    return GatedSplit(snapshot, keys)
