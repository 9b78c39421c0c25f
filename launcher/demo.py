"""``python -m launcher.demo``: the whole event-driven pipeline, once, on the configured backends.

Starts the Airflow components through :mod:`launcher.services` (2.x: a scheduler and a triggerer,
the webserver with ``--keep-ui``; 3.x: also the api-server and the dag-processor), unpauses the
pipeline's DAGs, uploads the phantom data set plus stray files into ``landing/``, and lets Datasets
drive the chain: ingest -> preprocess -> quality gate -> train (the sweep) -> evaluate baseline and
fine-tuned -> pick and promote. While it waits it prints one line per change (a DAG run started or
finished, files moved and registered, training epochs). When the pipeline is quiet (landing empty,
no run active or queued by a Dataset) it stops what it started, reads the registry and prints a
summary, also written to ``reports/demo_summary.json``. ``make demo`` runs it on the defaults
(DuckDB, a local folder, SQLite metadata); the end-to-end tests run it on small data sets.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import re
import signal
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import pendulum

from include.config import DATA_DIR, PROJECT_ROOT, settings
from include.storage import get_storage
from include.wiring.datasets import SPLITS
from launcher.progress import Progress
from launcher.services import ComponentStopped, RunningServices, airflow_services, this_airflow

log = logging.getLogger("launcher.demo")

# The chain in order; a stage's DAGs are unpaused only up to --until.
STAGES = {
    "registry": [f"{stage}_{split}_data" for stage in ("in_new", "preprocess") for split in SPLITS],
    "gate": [f"quality_gate_{split}" for split in SPLITS],
    "evaluated": ["train_model", "test_baseline_model", "test_fine_tuned_model"],
    "deployed": ["deploy_best_model"],
}
CONTINUOUS_SENSOR = "wait_for_landing_files"
# Files a real upload area receives too: text, an empty file, a truncated JPEG, a hostile name.
# Ingestion or the registry must quarantine each with a reason, and the demo still completes.
STRAY_FILES = {
    "notes (1).jpg": b"report dictated by the radiologist",
    "empty (2).jpg": b"",
    "glioma (9001).jpg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 40,
    "glioma (9002)'); DROP TABLE images;--.png": b"\x89PNG\r\n\x1a\n" + b"cut short",
}
SUMMARY_PATH = PROJECT_ROOT / "reports" / "demo_summary.json"


def pipeline_dags(until: str) -> list[str]:
    names = list(STAGES)
    return [dag_id for stage in names[: names.index(until) + 1] for dag_id in STAGES[stage]]


def upload(phantom_dir: Path) -> dict[str, int]:
    """Copy the phantom images into landing/<split>/subject=<id>/ (the subject from the set's
    labels.csv), and STRAY_FILES into landing/train/; returns files per split."""
    storage = get_storage()
    uploaded: Counter = Counter()
    # The set's own list, not a folder listing: a stray file in the set's folders is not uploaded.
    with (phantom_dir / "labels.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            split, name = row["file"].split("/")
            storage.write(f"landing/{split}/subject={row['subject']}/{name}", (phantom_dir / row["file"]).read_bytes())
            uploaded[split] += 1
    for name, data in STRAY_FILES.items():
        storage.write(f"landing/train/{name}", data)
        uploaded["train"] += 1
    return dict(uploaded)


def file_counts(progress: Progress, since: pendulum.DateTime) -> dict[str, Counter]:
    """Per split, from the XComs of this demo's runs: files moved by ingestion, files registered."""
    seen = {split: Counter() for split in SPLITS}
    for split in SPLITS:
        for dag_id, task_id, prefix in (
            (f"in_new_{split}_data", "move_batch", "ingest_"),
            (f"preprocess_{split}_data", "register_batch", "registry_"),
        ):
            for value in progress.return_values(dag_id, task_id, since):
                for outcome, n in (value or {}).get("counts", {}).items():
                    seen[split][prefix + outcome] += n
    return seen


class Watcher:
    """Polls Airflow and the task logs; prints one line per change; knows when all is quiet."""

    def __init__(self, progress: Progress, dag_ids: list[str], since: pendulum.DateTime):
        self.progress, self.dag_ids, self.since = progress, dag_ids, since
        # The DAGs whose runs end (the continuous ingestion DAGs always have one running).
        self.finite_dags = [dag_id for dag_id in dag_ids if not dag_id.startswith("in_new_")]
        # Runs a stopped demo left queued or running, which the scheduler resumes: not announced as
        # started, but their end is printed and a failure stops this demo as any other run's does.
        resumed = progress.active_runs(self.finite_dags)
        self.resumed = {(run.dag_id, run.run_id) for run in resumed}
        self.run_states: dict[tuple[str, str], str] = {(run.dag_id, run.run_id): run.state for run in resumed}
        self.runs_since = min([since, *(run.start_date for run in resumed if run.start_date)])
        self.counts: dict[str, dict] = {}
        # Epoch lines of earlier demos' training runs are not news: start at each log's end.
        self.log_offsets: dict[Path, int] = {path: path.stat().st_size for path in training_logs()}

    def poll(self) -> bool:
        """Print what changed; return True when the pipeline is quiet. Raises when a run failed."""
        self._print_epochs()
        failed = []
        for run in self.progress.runs(self.dag_ids, self.runs_since):
            key, state = (run.dag_id, run.run_id), run.state
            if key not in self.resumed and (run.start_date is None or run.start_date < self.since):
                continue
            if self.run_states.get(key) != state:
                self.run_states[key] = state
                self._print_run(run)
            # A failed gate is a verdict on the data, not a broken pipeline: it is printed with
            # its reason, the chain stops there, and the summary says so.
            if state == "failed" and not run.dag_id.startswith("quality_gate_"):
                failed.append(run)
        if failed:
            raise PipelineFailed(failed_tasks(self.progress, failed))
        quiet = not (
            self.progress.active_tasks(self.dag_ids, ignore_task=CONTINUOUS_SENSOR)
            or self.progress.queued_by_data(self.dag_ids)
            or self.progress.active_runs(self.finite_dags)
        )
        self._print_counts()
        return quiet and not any(get_storage().list(f"landing/{split}/") for split in SPLITS)

    def _print_run(self, run) -> None:
        if run.state == "running" or run.end_date is None:
            log.info("> %-22s run started (%s)", run.dag_id, run.run_type)
            return
        took = (run.end_date - run.start_date).total_seconds()
        log.info("%s %-22s run %s in %.0f s", "+" if run.state == "success" else "!", run.dag_id, run.state, took)
        if run.state == "failed" and run.dag_id.startswith("quality_gate_"):
            log.info("  %s", last_failure(run.dag_id))

    def _print_counts(self) -> None:
        for split, counts in file_counts(self.progress, self.since).items():
            if counts and self.counts.get(split) != counts:
                self.counts[split] = counts
                log.info("  files %-5s %s", split, ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))

    def _print_epochs(self) -> None:
        """The training task's epoch lines, as they are written to its log."""
        for path in training_logs():
            offset = self.log_offsets.get(path, 0)
            with path.open("rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]
            self.log_offsets[path] = offset + len(complete)
            for line in complete.decode(errors="replace").splitlines():
                message = this_airflow.log_message(line)
                if re.search(r"\bepoch\b", message, flags=re.IGNORECASE):
                    log.info("  train %s", message)


def training_logs() -> list[Path]:
    """The task logs of train_model, where the fine-tune writes its epoch lines."""
    from airflow.configuration import conf

    return sorted((Path(conf.get("logging", "base_log_folder")) / "dag_id=train_model").glob("**/*.log"))


class PipelineFailed(RuntimeError):
    """A DAG run of the chain failed; the message names each failed task and its error."""


def failed_tasks(progress: Progress, runs) -> str:
    lines = progress.failed_tasks(runs)
    detail = "; ".join(last_failure(run.dag_id) for run in runs)
    return f"Pipeline runs failed: {', '.join(lines)}. {detail} (task logs under $AIRFLOW_HOME/logs)"


def last_failure(dag_id: str) -> str:
    """The newest failure notification of ``dag_id``: the task and its error, as people were told."""
    notes = sorted(Path(settings().notifications_dir, dag_id).glob("*.failure.json"), key=lambda p: p.stat().st_mtime)
    if not notes:
        return f"{dag_id}: no failure notification written"
    note = json.loads(notes[-1].read_text())
    return f"{dag_id}.{note['task_id']}: {note['exception'] or note['message']}"


def wait_until_quiet(
    watcher: Watcher, timeout: float, services: RunningServices | None = None, poll_seconds: float = 2
) -> None:
    """Until nothing is left to do: landing empty, no run active or queued by a Dataset.

    Raises :class:`ComponentStopped` at once when one of ``services`` exits, rather than waiting
    for the timeout on a pipeline that can no longer move.
    """
    deadline = time.monotonic() + timeout
    quiet_polls = 0
    while True:
        if services is not None:
            services.raise_if_stopped()
        # Two quiet polls in a row: a task that has just finished may not have committed its
        # Dataset event yet when the first one looks.
        try:
            quiet = watcher.poll()
        except Exception:
            if services is not None:  # a component that died (the api-server on 3.x) says more
                services.raise_if_stopped()
            raise
        quiet_polls = quiet_polls + 1 if quiet else 0
        if quiet_polls >= 2:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"The pipeline did not finish within {timeout:.0f} s; see the lines above.")
        time.sleep(poll_seconds)


def run(phantom_dir: Path, timeout: float, until: str = "deployed", keep_ui: bool = False) -> dict:
    """Run the pipeline once on the data in ``phantom_dir``; return the summary.

    :param phantom_dir: a data set made by ``launcher.phantom`` (``train/`` and ``test/``).
    :param timeout: seconds to wait for the pipeline to become quiet.
    :param until: the last stage to run: registry, gate, evaluated or deployed.
    :param keep_ui: start the UI too and keep everything running until Ctrl-C.
    """
    from airflow import __version__ as airflow_version
    from airflow.configuration import conf

    from launcher.summary import build_summary

    started = time.monotonic()
    dag_ids = pipeline_dags(until)
    since = pendulum.now("UTC")
    log_dir = Path(conf.get("logging", "base_log_folder")).parent / "demo"
    with airflow_services(log_dir, ui=keep_ui, dag_ids=dag_ids) as services:
        if keep_ui:
            # Printed once, here: a new password every demo (2.x keeps it hashed in the metadata DB,
            # 3.x's simple auth manager in its passwords file, mode 0600).
            log.info(
                "Airflow UI: %s (user %s, password %s)",
                services.ui_url,
                services.login.username,
                services.login.password,
            )
        uploaded = upload(phantom_dir)
        log.info("Uploaded %s files into landing/; the sensors take it from here", uploaded)
        watcher = Watcher(services.progress, dag_ids, since)
        wait_until_quiet(watcher, timeout, services)
        if keep_ui:
            log.info("Done; the UI stays up at %s. Ctrl-C stops everything.", services.ui_url)
            wait_for_interrupt(services)
        # Read while Airflow is up: on 3.x they come from the api-server.
        counts = file_counts(services.progress, since)
        start_delays = services.progress.start_delays(dag_ids, since)
    # DuckDB has one writer at a time: the registry is read only after every task stopped.
    summary = build_summary(counts, until, wall_seconds=time.monotonic() - started)
    summary["airflow"] = airflow_version
    # The per-task overhead (queued -> running), compared across the majors by benchmarks.airflow_majors.
    summary["task_start_median_seconds"] = round(statistics.median(start_delays), 2) if start_delays else None
    if keep_ui:
        summary["ui"] = services.ui_url
    return summary


def wait_for_interrupt(services: RunningServices) -> None:
    """Until Ctrl-C (or SIGTERM/SIGHUP, see :func:`main`); raises when a component dies meanwhile."""
    try:
        while True:
            services.raise_if_stopped()
            time.sleep(2)
    except KeyboardInterrupt:
        log.info("Stopping")


def stop_on_signal(signum: int, frame) -> None:
    """SIGTERM or SIGHUP (a closed terminal, a CI timeout) unwind like Ctrl-C, so the
    components are stopped; they run in sessions of their own and would not get the signal."""
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m launcher.demo", description=__doc__)
    parser.add_argument("--per-class", type=int, default=330, help="phantom images per class (train + test)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the pipeline")
    parser.add_argument("--phantom-dir", type=Path, default=DATA_DIR / "phantom", help="where the data set is made")
    parser.add_argument("--until", choices=list(STAGES), default="deployed", help="the last stage to run")
    parser.add_argument("--keep-ui", action="store_true", help="start the UI and keep it up (Ctrl-C stops)")
    parser.add_argument("--summary", type=Path, default=SUMMARY_PATH, help="where the JSON summary is written")
    args = parser.parse_args()
    configure_logging()
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop_on_signal)

    from launcher.phantom import PhantomConfig, generate_dataset
    from launcher.summary import print_summary, write_summary

    # labels.csv came with subjects: a set made before them is made again.
    if not (args.phantom_dir / "labels.csv").exists():
        log.info("Generating the phantom data set (%s per class) into %s", args.per_class, args.phantom_dir)
        generate_dataset(args.phantom_dir, PhantomConfig(per_class=args.per_class))
    try:
        summary = run(args.phantom_dir, args.timeout, args.until, args.keep_ui)
    except (PipelineFailed, TimeoutError) as err:
        log.error("%s", err)
        return 1
    except ComponentStopped as err:
        if err.signal is None:
            log.error("%s. Everything else was stopped; the log says why.", err)
        else:
            log.error("%s. Everything else was stopped; `make demo` again resumes where this run stopped.", err)
        return 1
    print_summary(summary, previous=args.summary)
    write_summary(summary, args.summary)
    if args.until != "registry" and not all(summary["gate_passed"].values()):
        log.error(
            "The quality gate did not pass %s; the chain stopped there. Report: %s",
            summary["gate_passed"],
            summary["report"],
        )
        return 1
    return 0


def configure_logging() -> None:
    """One handler of our own: Airflow also configures the root logger, which printed each line twice."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    for name in ("launcher.demo", "launcher.summary"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False
    # Airflow's own INFO lines (DAG sync, connection look-ups) would bury the progress lines.
    logging.getLogger("airflow").setLevel(logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
