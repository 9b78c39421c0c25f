"""Where the preprocess DAG's time goes when it registers N files, on DuckDB + a local folder (the
embedded default) and on Postgres. Prints Markdown tables.

    python -m benchmarks.preprocess_stages --files 10000

N small grayscale JPEGs (`glioma (i).jpg` / `meningioma (i).jpg`) are written to a temp storage
root under raw/train/. Each stage is then timed in this one process by calling what its task calls:
list (the storage listing a manual run makes), validate + hash (`fingerprint` on every file, in
batches of the backend's `register_batch_size`, or --batch) and write (`write_records` per batch,
on a fresh `get_database` per batch as a mapped task does). Then the whole DAG runs once per
backend with `dag.test()` on an emptied registry; its rate against the sum of the stages shows
what Airflow adds per task when tasks run one after another, and timing each task instance it
runs shows which tasks that time went to.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from unittest import mock

from benchmarks.registry_writes import fresh_database

STAGES = ("list", "validate + hash", "write")


def write_images(folder: Path, count: int) -> None:
    """``count`` distinct 256x256 JPEGs, half per label: an 8x8 random grid upscaled smoothly,
    so each file has its own content hash yet encodes and decodes fast."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        label = ("glioma", "meningioma")[i % 2]
        grid = Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8))
        grid.resize((256, 256), Image.BICUBIC).save(folder / f"{label} ({i // 2 + 1}).jpg", quality=90)


def use_backend(conn_id: str) -> None:
    """Point the project's settings (read once per process) at ``conn_id``."""
    from include.config import settings

    os.environ["AIRFLOW_VAR_MRI_DB_CONN_ID"] = conn_id
    settings.cache_clear()


def stage_seconds(conn_id: str) -> dict[str, float]:
    """Seconds per stage for one pass over raw/train/ into an emptied registry."""
    from include.config import settings
    from include.db import get_database
    from include.ingestion.mover import batches
    from include.registry.records import Limits, fingerprint, read_label_overrides, write_records
    from include.storage import get_storage

    use_backend(conn_id)
    fresh_database(conn_id)
    # What a task process has imported before its first batch (the DAG file imports pandas;
    # pyarrow is DuckDB's staging): start-up, not a stage.
    for module in ("pandas", "pyarrow"):
        importlib.import_module(module)
    cfg, storage, run_id = settings(), get_storage(), "bench"
    seconds = dict.fromkeys(STAGES, 0.0)

    began = time.perf_counter()
    uris = [storage.uri(o.key) for o in storage.list("raw/train")]
    seconds["list"] = time.perf_counter() - began

    limits = Limits(cfg.min_image_side, cfg.max_image_pixels, cfg.max_upload_bytes)
    for batch in batches(uris, cfg.register_batch_size or get_database(conn_id).register_batch_size):
        began = time.perf_counter()
        overrides = read_label_overrides(storage, cfg.labels_csv)
        records = [fingerprint(storage, uri, "train", run_id, cfg.labels, overrides, limits) for uri in batch]
        seconds["validate + hash"] += time.perf_counter() - began
        began = time.perf_counter()
        write_records(get_database(conn_id), records, run_id)
        seconds["write"] += time.perf_counter() - began
    assert all(r.status == "registered" for r in records), records[0]
    return seconds


def dag_run(conn_id: str, files: int) -> tuple[float, dict[str, float]]:
    """Seconds of one `dag.test()` into an emptied registry, and seconds per task_id in it."""
    from airflow.models import dag as airflow_dag
    from airflow.utils.state import DagRunState

    from include.registry.dag import build_preprocess_dag

    use_backend(conn_id)
    db = fresh_database(conn_id)
    dag = build_preprocess_dag("train", "bench")  # built before the clock: parsing is not a run
    per_task: dict[str, float] = defaultdict(float)
    run_task = airflow_dag._run_task

    def timed_run_task(*, ti, **kwargs):
        began = time.perf_counter()
        try:
            return run_task(ti=ti, **kwargs)
        finally:
            per_task[ti.task_id] += time.perf_counter() - began

    # dag.test() leaves the task instances' start_date empty, so their durations are unknown:
    # time the helper it runs each task instance with instead.
    began = time.perf_counter()
    with mock.patch.object(airflow_dag, "_run_task", timed_run_task):
        run = dag.test()
    seconds = time.perf_counter() - began
    assert run.state == DagRunState.SUCCESS, run.state
    [(count,)] = db.fetch_all("SELECT COUNT(*) FROM image_files")
    assert count == files, f"registered {count} of {files} files"
    return seconds, dict(per_task)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=None, help="MRI_REGISTER_BATCH_SIZE; default: each backend's own")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-preprocess-") as tmp:
        # Airflow reads its config at import: set it first. Only this run's MRI_* settings apply.
        os.environ.setdefault("AIRFLOW_HOME", f"{tmp}/airflow")
        os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        os.environ.setdefault("AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES", "airflow.* astro.*")
        for name in [n for n in os.environ if n.startswith(("MRI_", "AIRFLOW_VAR_MRI_"))]:
            del os.environ[name]
        os.environ["MRI_STORAGE_ROOT"] = f"{tmp}/storage"
        if args.batch:
            os.environ["MRI_REGISTER_BATCH_SIZE"] = str(args.batch)
        # dag.test() records its run in the metadata DB, as tests/conftest.py prepares it.
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
        write_images(Path(tmp, "storage/raw/train"), args.files)

        from tests.support.postgres import running_postgres

        with running_postgres() as server:
            os.environ["AIRFLOW_CONN_BENCH_PG"] = server.airflow_conn()
            os.environ["AIRFLOW_CONN_BENCH_DUCKDB"] = f'{{"conn_type": "duckdb", "host": "{tmp}/bench.duckdb"}}'
            backends = {"DuckDB": "bench_duckdb", "Postgres": "bench_pg"}
            stages = {name: stage_seconds(conn_id) for name, conn_id in backends.items()}
            runs = {name: dag_run(conn_id, args.files) for name, conn_id in backends.items()}

    names = list(backends)

    def rate(seconds: float) -> str:
        return f"{args.files / seconds:,.0f}"

    from benchmarks.headline import record
    from include.db.duckdb import DuckDBDatabase
    from include.db.postgres import PostgresDatabase

    classes = {"DuckDB": DuckDBDatabase, "Postgres": PostgresDatabase}
    sizes = {n: args.batch or classes[n].register_batch_size for n in names}
    batch_text = ", ".join(f"{n} {size}" for n, size in sizes.items())
    print(f"\n{args.files:,} files (256x256 JPEG), files per batch: {batch_text}, {os.cpu_count()} CPUs\n")
    print("| stage | " + " | ".join(f"{n} files/s | {n} share" for n in names) + " |")
    print("|---|" + "---:|---:|" * len(names))
    for stage in STAGES:
        cells = [f"{rate(stages[n][stage])} | {stages[n][stage] / sum(stages[n].values()):.0%}" for n in names]
        print(f"| {stage} | " + " | ".join(cells) + " |")
    print("| sum of stages | " + " | ".join(f"{rate(sum(stages[n].values()))} | 100%" for n in names) + " |")
    # The ratio: how many times longer the DAG takes than its stages' work alone.
    cells = [f"{rate(runs[n][0])} | {runs[n][0] / sum(stages[n].values()):.2f} × stages" for n in names]
    print("| whole DAG, dag.test() | " + " | ".join(cells) + " |")

    print("\nShare of the dag.test() run per task_id (mapped tasks summed):\n")
    print("| task_id | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    task_ids = sorted({t for n in names for t in runs[n][1]}, key=lambda t: -runs[names[0]][1].get(t, 0))
    for task_id in task_ids:
        print(f"| {task_id} | " + " | ".join(f"{runs[n][1].get(task_id, 0) / runs[n][0]:.1%}" for n in names) + " |")
    # What no task instance covers: dag.test() scheduling, task setup and teardown between tasks.
    print("| (between tasks) | " + " | ".join(f"{1 - sum(runs[n][1].values()) / runs[n][0]:.1%}" for n in names) + " |")
    record(
        "preprocess_stages",
        [
            (
                f"{n}: whole preprocess DAG (dag.test(), {args.files:,} files) vs the sum of its stages run bare",
                f"{runs[n][0] / sum(stages[n].values()):.2f}× the time",
                "-",
            )
            for n in names
        ],
    )


if __name__ == "__main__":
    main()
