"""The scale profile measured: N files through ingestion and the registry on CeleryExecutor (Redis,
MRI_CELERY_WORKERS workers), PostgreSQL and S3 (moto over HTTP), against the same stages run bare
in one process. Prints a Markdown table.

    python -m benchmarks.scale --files 2000 --batch 100                  # images on moto's S3 server
    python -m benchmarks.scale --files 5000 --batch 500 --storage local  # on a folder the workers share

N distinct 256x256 JPEGs are put in landing/train/ before the scheduler starts (so the first
sensor poke sees them all), then the real scheduler, triggerer and Celery workers
(``launcher.services``) run `in_new_train_data` and `preprocess_train_data` until every
file is in `image_files`. End to end is from the first ingestion task's start to the last
`register_batch` end, read from the metadata DB; so are the writers that ran at once. Memory is
the peak PSS (shared pages counted once) of the scheduler's and of one worker's process tree,
sampled every half second. The bare stages (move, list, validate + hash, write) call what the
tasks call, in this process, on their own database and bucket (or folder).
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path

from benchmarks.headline import record
from launcher.scale_profile import (
    PROJECT_AIRFLOW,
    create_bucket,
    create_database,
    migrate_metadata,
    scale_environment,
)
from launcher.servers import running_postgres, running_redis, running_s3_server

TRAIN_DAGS = ("in_new_train_data", "preprocess_train_data")
MB = 1024 * 1024


class MemorySampler(threading.Thread):
    """Peak PSS of the process trees whose root command line contains each of ``patterns``."""

    def __init__(self, patterns: dict[str, tuple[str, ...]], interval: float = 0.5):
        super().__init__(daemon=True)
        self.patterns, self.interval = patterns, interval
        self.peak: dict[str, int] = defaultdict(int)
        self.done = threading.Event()

    def run(self) -> None:
        import psutil

        while not self.done.is_set():
            for name, words in self.patterns.items():
                for root in psutil.process_iter(["cmdline"]):
                    if all(word in " ".join(root.info["cmdline"] or []) for word in words):
                        self.peak[name] = max(self.peak[name], self._tree_pss(root))
                        break
            self.done.wait(self.interval)

    @staticmethod
    def _tree_pss(root) -> int:
        import psutil

        total = 0
        for process in [root, *root.children(recursive=True)]:
            try:
                total += process.memory_full_info().pss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return total


def upload(folder: Path, prefix: str) -> list[str]:
    from include.storage import get_storage

    storage = get_storage()
    keys = []
    for path in sorted(folder.glob("*.jpg")):
        storage.write(f"{prefix}/{path.name}", path.read_bytes())
        keys.append(f"{prefix}/{path.name}")
    return keys


def end_to_end(files: int, meta_url: str, log_dir: Path, timeout: float) -> dict:
    """Run the two train DAGs on the real services until ``files`` are registered."""
    import psycopg2

    from include.db import get_database
    from launcher.services import airflow_services
    from tests.support.concurrency import most_at_once

    registry = get_database()
    logging.getLogger("airflow.hooks.base").setLevel(logging.WARNING)  # one "Retrieving connection" a poll
    sampler = MemorySampler({"scheduler": ("airflow", "scheduler"), "worker": ("celery", "worker1@")})
    sampler.start()
    began = time.monotonic()
    with airflow_services(log_dir, dag_ids=TRAIN_DAGS) as services:  # registered and unpaused when it starts
        while registry.fetch_all("SELECT COUNT(*) FROM image_files")[0][0] < files:
            assert time.monotonic() - began < timeout, f"not registered within {timeout} s; logs in {log_dir}"
            services.raise_if_stopped()
            time.sleep(1)
        wall = time.monotonic() - began
    sampler.done.set()
    sampler.join()
    with psycopg2.connect(meta_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT MIN(start_date) FROM task_instance WHERE dag_id = %s AND task_id = 'list_landing_batches'",
            (TRAIN_DAGS[0],),
        )
        [(first_start,)] = cur.fetchall()
        cur.execute(
            "SELECT start_date, end_date, hostname FROM task_instance WHERE dag_id = %s AND task_id = 'register_batch'",
            (TRAIN_DAGS[1],),
        )
        spans = cur.fetchall()
    last_end = max(end for _, end, _ in spans)
    return {
        "seconds": (last_end - first_start).total_seconds(),
        "wall": wall,
        "writers": most_at_once([(s.timestamp(), e.timestamp()) for s, e, _ in spans]),
        "batches": len(spans),
        "hosts": len({host for _, _, host in spans}),
        "scheduler_mb": sampler.peak["scheduler"] / MB,
        "worker_mb": sampler.peak["worker"] / MB,
    }


def bare_stages(images: Path, registry_conn_id: str, storage_root: str) -> dict[str, float]:
    """Seconds per stage, each called as its task calls it, one process, on their own store."""
    from benchmarks.preprocess_stages import stage_seconds
    from include.config import settings
    from include.ingestion.mover import ingest_file
    from include.storage import get_storage

    os.environ["AIRFLOW_VAR_MRI_STORAGE_ROOT"] = storage_root
    settings.cache_clear()
    keys = upload(images, "landing/train")
    storage = get_storage()
    began = time.perf_counter()
    outcomes = [ingest_file(storage, key, "train") for key in keys]
    move = time.perf_counter() - began
    assert all(o.outcome == "moved" for o in outcomes)
    return {"move": move, **stage_seconds(registry_conn_id)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=100, help="MRI_MOVE_BATCH_SIZE and MRI_REGISTER_BATCH_SIZE")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument(
        "--storage", choices=["s3", "local"], default="s3", help="moto's S3 server, or a folder all workers share"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp, ExitStack() as servers:
        postgres = servers.enter_context(running_postgres())
        redis_url = servers.enter_context(running_redis())
        s3_endpoint = servers.enter_context(running_s3_server())
        for bucket in ("mri", "bare"):
            create_bucket(s3_endpoint, bucket)
        meta_url = create_database(postgres, "airflow_meta")
        bare_url = create_database(postgres, "bare")
        # Airflow reads its config at import: the whole profile is in the environment first.
        for name in [n for n in os.environ if n.startswith(("MRI_", "AIRFLOW_VAR_MRI_"))]:
            del os.environ[name]
        os.environ.update(PROJECT_AIRFLOW)
        os.environ.update(
            scale_environment(Path(tmp, "airflow"), meta_url, postgres.url, redis_url, s3_endpoint, "mri")
        )
        os.environ.update(
            MRI_MOVE_BATCH_SIZE=str(args.batch), MRI_REGISTER_BATCH_SIZE=str(args.batch), MRI_SENSOR_POKE_SECONDS="2"
        )
        os.environ["AIRFLOW_CONN_BENCH_BARE"] = bare_url.replace("postgresql://", "postgres://", 1)
        if args.storage == "local":  # the workers share this machine's disk: the store without moto's cost
            os.environ["AIRFLOW_VAR_MRI_STORAGE_ROOT"] = f"{tmp}/storage"
            del os.environ["AIRFLOW_VAR_MRI_STORAGE_CONN_ID"]
        migrate_metadata(dict(os.environ))
        subprocess.run([sys.executable, "-m", "include.db", "migrate"], check=True, capture_output=True)

        from benchmarks.preprocess_stages import write_images

        images = Path(tmp, "images")
        write_images(images, args.files)
        upload(images, "landing/train")
        e2e = end_to_end(args.files, meta_url, Path(tmp, "airflow", "bench"), args.timeout)
        stages = bare_stages(images, "bench_bare", "s3://bare/mri" if args.storage == "s3" else f"{tmp}/bare")

    workers = int(os.environ.get("MRI_CELERY_WORKERS", "2"))
    store = "S3 (moto)" if args.storage == "s3" else "a local folder"
    concurrency = os.environ["AIRFLOW__CELERY__WORKER_CONCURRENCY"]
    bare = sum(stages.values())
    print(
        f"\n{args.files:,} files (256x256 JPEG), batches of {args.batch}, CeleryExecutor with {workers} workers "
        f"x {concurrency} processes, Postgres, {store}, {os.cpu_count()} CPUs\n"
    )
    print("| measure | value |")
    print("|---|---:|")
    for stage, seconds in stages.items():
        print(f"| bare: {stage} (files/s) | {args.files / seconds:,.0f} |")
    print(f"| bare: sum of stages (files/s) | {args.files / bare:,.0f} |")
    print(f"| Celery profile, first move -> last registration (files/s) | {args.files / e2e['seconds']:,.0f} |")
    print(f"| Celery profile / sum of stages | {bare / e2e['seconds']:.2f} |")
    print(f"| wall from scheduler start to all registered (s) | {e2e['wall']:.0f} |")
    print(f"| register_batch tasks (workers that ran them) | {e2e['batches']} ({e2e['hosts']}) |")
    print(f"| writers at once (most register_batch overlapping) | {e2e['writers']} |")
    print(f"| peak PSS, scheduler process tree (MB) | {e2e['scheduler_mb']:,.0f} |")
    print(f"| peak PSS, one worker's process tree (MB) | {e2e['worker_mb']:,.0f} |")
    record(
        f"scale_{args.storage}",
        [
            (
                f"Celery profile, {args.files:,} files, {store}: end to end / sum of the stages bare",
                f"{bare / e2e['seconds']:.2f}",
                "-",
            ),
            (
                "register_batch writers at once, Celery workers that ran them",
                f"{e2e['writers']}, {e2e['hosts']}",
                ">= 2, 2",
            ),
            (
                "peak memory (PSS) scheduler / one worker",
                f"{e2e['scheduler_mb']:,.0f} / {e2e['worker_mb']:,.0f} MB",
                "-",
            ),
        ],
    )


if __name__ == "__main__":
    main()
