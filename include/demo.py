"""``python -m include.demo``: the whole event-driven pipeline, once, on the configured backends.

Starts a real Airflow scheduler and triggerer, unpauses the pipeline's DAGs, uploads the phantom
data set (plus two files that are not images) into ``landing/``, and waits until every file that
reached ``raw/`` has been registered: the continuous DAGs' deferrable sensors fire, the files are
moved in mapped batches, the raw Datasets start the preprocess DAGs. Then it stops the
scheduler and triggerer and logs what the registry holds. ``make demo`` runs it on the defaults
(DuckDB, a local folder, SQLite metadata); the end-to-end test runs it on a small data set.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter
from pathlib import Path

import pendulum

from include.airflow_services import airflow_services
from include.config import DATA_DIR, SQL_DIR, settings
from include.datasets import SPLITS
from include.storage import get_storage

log = logging.getLogger("include.demo")

PIPELINE_DAGS = [f"{stage}_{split}_data" for stage in ("in_new", "preprocess") for split in SPLITS]
# Files a real upload area receives too; the ingestion DAGs must quarantine them, not stop.
NOT_IMAGES = {"notes (1).jpg": b"report dictated by the radiologist", "empty (2).jpg": b""}


def unpause_pipeline() -> None:
    """Register the DAGs in the metadata DB and unpause them, as a user would in the UI."""
    from airflow.models import DagBag, DagModel

    bag = DagBag(include_examples=False)
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    bag.sync_to_db()
    for dag_id in PIPELINE_DAGS:
        DagModel.get_dagmodel(dag_id).set_is_paused(False)


def upload(phantom_dir: Path) -> dict[str, int]:
    """Copy the phantom images (and NOT_IMAGES) into landing/<split>/; returns files per split."""
    storage = get_storage()
    uploaded: Counter = Counter()
    for split in SPLITS:
        for path in sorted((phantom_dir / split).glob("*.*")):
            storage.write(f"landing/{split}/{path.name}", path.read_bytes())
            uploaded[split] += 1
    for name, data in NOT_IMAGES.items():
        storage.write(f"landing/train/{name}", data)
        uploaded["train"] += 1
    return dict(uploaded)


def progress(since: pendulum.DateTime) -> dict[str, Counter]:
    """Per split, from XComs of this demo's runs: files handled by ingestion, files registered."""
    from airflow.models import XCom
    from airflow.utils.session import create_session

    seen = {split: Counter() for split in SPLITS}
    with create_session() as session:
        for split in SPLITS:
            for dag_id, task_id, prefix in (
                (f"in_new_{split}_data", "move_batch", "ingest_"),
                (f"preprocess_{split}_data", "register_batch", "registry_"),
            ):
                rows = session.query(XCom).filter(
                    XCom.dag_id == dag_id, XCom.task_id == task_id, XCom.key == "return_value", XCom.timestamp >= since
                )
                for row in rows:
                    for outcome, n in row.value["counts"].items():  # deserialized on load
                        seen[split][prefix + outcome] += n
    return seen


def failed_tasks(since: pendulum.DateTime) -> list[str]:
    """Pipeline tasks that failed for good (retries spent) since ``since``."""
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    with create_session() as session:
        failed = session.query(TaskInstance).filter(
            TaskInstance.dag_id.in_(PIPELINE_DAGS),
            TaskInstance.state == TaskInstanceState.FAILED,
            TaskInstance.end_date >= since,
        )
        return [f"{ti.dag_id}.{ti.task_id}[{ti.map_index}]" for ti in failed]


def wait_until_registered(uploaded: dict[str, int], since: pendulum.DateTime, timeout: float) -> dict[str, Counter]:
    """Until every upload left landing and every file that reached raw/ is in the registry."""
    deadline = time.monotonic() + timeout
    while True:
        if failed := failed_tasks(since):
            raise RuntimeError(f"Pipeline tasks failed: {failed}; their logs are under $AIRFLOW_HOME/logs")
        seen = progress(since)
        # Duplicates (bytes already in raw/) and ingestion's quarantine never reach the registry.
        ingested = {s: sum(n for k, n in seen[s].items() if k.startswith("ingest_")) for s in SPLITS}
        registered = {s: seen[s]["registry_registered"] + seen[s]["registry_quarantined"] for s in SPLITS}
        if all(ingested[s] >= uploaded.get(s, 0) and registered[s] >= seen[s]["ingest_moved"] for s in SPLITS):
            return seen
        if time.monotonic() > deadline:
            raise TimeoutError(f"Pipeline did not finish within {timeout:.0f} s; progress so far: {seen}")
        time.sleep(3)


def registry_report() -> list[tuple]:
    """The registry per split, status and label (read after the scheduler stopped: DuckDB is one writer)."""
    from include.db import get_database

    db = get_database()
    query = (SQL_DIR / "registry_summary.sql").read_text().replace("{{ split }}", db.placeholder)
    return [(split, *row) for split in SPLITS for row in db.fetch_all(query, (split,))]


def run(phantom_dir: Path, timeout: float) -> tuple[dict[str, Counter], list[tuple]]:
    """Run the pipeline once on the data in ``phantom_dir``; returns the progress and the report."""
    from airflow.configuration import conf

    unpause_pipeline()
    since = pendulum.now("UTC")
    with airflow_services(Path(conf.get("logging", "base_log_folder")).parent / "demo"):
        uploaded = upload(phantom_dir)
        log.info("Uploaded %s into landing/; waiting for the DAGs", uploaded)
        seen = wait_until_registered(uploaded, since, timeout)
    return seen, registry_report()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m include.demo", description=__doc__)
    parser.add_argument("--per-class", type=int, default=330, help="phantom images per class (train + test)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the pipeline")
    parser.add_argument("--phantom-dir", type=Path, default=DATA_DIR / "phantom", help="where the data set is made")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from include.phantom import PhantomConfig, generate_dataset

    phantom_dir = args.phantom_dir
    if not (phantom_dir / "manifest.csv").exists():
        generate_dataset(phantom_dir, PhantomConfig(per_class=args.per_class))
    started = time.monotonic()
    seen, report = run(phantom_dir, args.timeout)
    log.info(
        "Pipeline finished in %.0f s. Ingestion and registration per split: %s",
        time.monotonic() - started,
        {split: dict(counts) for split, counts in seen.items()},
    )
    log.info("Registry (%s) per split, status, label:", settings().db_conn_id)
    for row in report:
        log.info("  %-5s %-11s %-10s %5s", *row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
