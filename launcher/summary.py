"""What a demo run did, read from the registry after every Airflow component stopped: printed, and
written to ``reports/demo_summary.json`` (the keys are documented in the README)."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

from include.config import settings
from include.db import RegistryDatabase, get_database
from include.db.migrations import apply_migrations
from include.files import atomic_write
from include.wiring.datasets import SPLITS

log = logging.getLogger("launcher.summary")

METRICS = ("roc_auc", "accuracy", "f1", "balanced_accuracy", "brier", "loss")


def build_summary(counts: dict[str, Counter], until: str, wall_seconds: float) -> dict:
    """The summary of one demo run.

    :param counts: files per split and outcome, from the run's XComs (``ingest_moved``, ...).
    :param until: the last stage the demo ran.
    :param wall_seconds: the demo's wall time.
    """
    db = get_database()
    apply_migrations(db)  # a demo stopped before any registry DAG ran still gets a summary
    p = db.placeholder
    summary: dict = {
        "until": until,
        "ingested": sum(c["ingest_moved"] for c in counts.values()),
        "duplicates": sum(c["ingest_duplicate"] for c in counts.values()),
        "quarantined": sum(c["ingest_quarantined"] + c["registry_quarantined"] for c in counts.values()),
        "registered_now": sum(c["registry_registered"] for c in counts.values()),
        "registry": {
            split: dict(
                db.fetch_all(f"SELECT status, COUNT(*) FROM images WHERE split = {p} GROUP BY status", (split,))
            )
            for split in SPLITS
        },
    }
    gate = {split: latest_gate(db, split) for split in SPLITS}
    summary["gate_passed"] = {split: (row or {}).get("success") for split, row in gate.items()}
    summary["report_run"] = (gate["test"] or gate["train"] or {}).get("report_path")
    summary["report"] = data_docs_index(summary["report_run"])
    test_snapshot = (gate["test"] or {}).get("snapshot") if summary["gate_passed"]["test"] else None
    summary["test_snapshot"] = test_snapshot
    # Beside the chosen model: the untrained network (chance) and the learned baseline it had to beat.
    summary["baseline"] = result_of(db, test_snapshot, role="baseline")
    summary["learned_baseline"] = result_of(db, test_snapshot, role="learned_baseline")
    production = db.fetch_all("SELECT model_id, path FROM models WHERE stage = 'production'")
    summary["promoted_model"] = production[0][0] if production else None
    summary["fine_tuned"] = (
        result_of(db, test_snapshot, model_id=production[0][0])
        if production
        else result_of(db, test_snapshot, role="fine_tuned")
    )
    summary["roc_png"] = (summary["fine_tuned"] or {}).get("roc_png")
    summary["bundle"] = str(Path(settings().production_dir) / "current") if production else None
    summary["decision"] = latest_decision(db)
    summary["wall_seconds"] = round(wall_seconds, 1)
    return summary


def data_docs_index(run_page: str | None) -> str | None:
    """The Data Docs index (every gate run linked) above a run's page; the page itself if none."""
    if run_page is None:
        return None
    indexes = [folder / "index.html" for folder in Path(run_page).parents if (folder / "index.html").exists()]
    return str(indexes[0]) if indexes else run_page


def latest_gate(db: RegistryDatabase, split: str) -> dict | None:
    rows = db.fetch_all(*db.statement("latest_gate_run.sql", split=split))
    return dict(zip(("success", "snapshot", "report_path", "run_id"), rows[0], strict=True)) if rows else None


def result_of(
    db: RegistryDatabase, snapshot: str | None, role: str | None = None, model_id: str | None = None
) -> dict | None:
    """The newest result on ``snapshot`` of a model of ``role`` or of the model ``model_id`` (give one):
    the latest baseline of a role, or the production model's latest evaluation; with the 95% intervals of
    its ROC AUC and accuracy and the validation ROC AUC its sweep chose it by (None for a baseline)."""
    if snapshot is None:
        return None
    rows = db.fetch_records(*db.statement("summary_result.sql", role=role, model_id=model_id, test_snapshot=snapshot))
    if not rows:
        return None
    row = {k: round(v, 4) if isinstance(v, float) else v for k, v in rows[0].items()}
    return {
        "model_id": row["model_id"],
        **{name: row[name] for name in METRICS},
        "roc_auc_interval": [row["roc_auc_low"], row["roc_auc_high"]],
        "accuracy_interval": [row["accuracy_low"], row["accuracy_high"]],
        "validation_roc_auc": row["val_roc_auc"],
        "roc_png": row["roc_png"],
    }


def latest_decision(db: RegistryDatabase) -> dict | None:
    rows = db.fetch_all("SELECT promoted, reason, run_id FROM promotions ORDER BY decided_at DESC LIMIT 1")
    return dict(zip(("promoted", "reason", "run_id"), rows[0], strict=True)) if rows else None


def changes(summary: dict, previous: dict | None) -> list[str]:
    """What this run changed, in words (a second `make demo` should say why nothing happened)."""
    said = []
    if summary["ingested"] == 0:
        said.append(f"nothing new to ingest ({summary['duplicates']} uploads were already in raw/)")
    else:
        said.append(f"{summary['ingested']} files ingested, {summary['registered_now']} registered")
    if previous and previous.get("promoted_model") == summary["promoted_model"]:
        why = (summary.get("decision") or {}).get("reason") if summary["registered_now"] else None
        said.append(
            f"production model unchanged ({summary['promoted_model']}): "
            + (why or "no new gated data, so the gate, training and evaluation had nothing to do")
        )
    elif summary["promoted_model"]:
        said.append(f"promoted {summary['promoted_model']}")
    return said


def print_summary(summary: dict, previous: Path) -> None:
    before = json.loads(previous.read_text()) if previous.exists() else None
    log.info("")
    log.info("Demo finished in %.0f s (until: %s)", summary["wall_seconds"], summary["until"])
    for line in changes(summary, before):
        log.info("  - %s", line)
    log.info(
        "  ingested %s, quarantined %s, registry %s", summary["ingested"], summary["quarantined"], summary["registry"]
    )
    log.info("  gate passed: %s; report: %s", summary["gate_passed"], summary["report"])
    for name in ("baseline", "learned_baseline", "fine_tuned"):
        result = summary.get(name)
        if result:
            log.info("  %-16s %s: %s", name, result["model_id"], ", ".join(f"{k} {result[k]}" for k in METRICS))
            low, high = result["roc_auc_interval"]
            chosen = result["validation_roc_auc"]
            log.info(
                "  %-16s test ROC AUC %s, 95%% interval [%s, %s]%s",
                "",
                result["roc_auc"],
                low,
                high,
                f"; chosen on validation ROC AUC {chosen}" if chosen is not None else "",
            )
    log.info("  production model: %s (bundle %s)", summary["promoted_model"], summary["bundle"])
    log.info("  ROC curve: %s", summary["roc_png"])
    if summary.get("ui"):
        log.info("  UI: %s", summary["ui"])


def write_summary(summary: dict, path: Path) -> None:
    """Temp file then rename: a reader never sees half a summary."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(summary, indent=2, default=str))
    log.info("Summary written to %s", path)
