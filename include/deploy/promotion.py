"""Promotion: decide whether the best model replaces production, and publish it so no reader sees half.

Invariants, each kept by one function:

- :func:`decide` compares like with like: the pick (``sql/pick_best_model.sql``) ranks results on the
  latest gated test snapshot only, and a model replaces production only if it beats production's
  result *on that snapshot* by ``MRI_PROMOTION_MARGIN``. Every "no" is a ``promotions`` row with why.
- :func:`promote` changes the ``models`` stages in one transaction and switches the served bundle
  inside it, just before the commit; any exception up to and including the commit rolls the
  registry back and points ``current`` back at the previous release. So the registry and the
  bundle move together or not at all.
- :class:`LocalBundles` publishes by write-to-temp then rename: a release is assembled in a hidden
  staging folder, renamed into ``releases/`` (a new name, so one ``rename(2)``), and served by
  replacing the ``current`` symlink with ``os.replace`` (also one ``rename(2)``). A reader that
  resolves ``current`` gets the old release or the new one, whole. A directory cannot be renamed
  over a non-empty directory, hence the symlink; the previous release is kept, so a reader that
  opened it mid-switch finishes reading, and a rollback has something to point at.
- :func:`reconcile` repairs the one window no exception covers (the process killed between the
  symlink switch and the commit): the registry is the truth, and ``current`` is re-pointed at the
  newest release of the registry's production model.

Nothing here builds SQL from data: values are bound, the metric name is checked against
``SELECTION_METRICS`` and travels as a bound value too.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from include.config import SELECTION_METRICS
from include.db import RegistryDatabase
from include.ml.bundle import DEPLOYMENT_FILE
from include.names import safe_name
from include.training import METRIC_NAMES

log = logging.getLogger(__name__)

# What a bundle holds beyond the model's own save_pretrained directory (weights, config.json with
# the label map, the image processor's preprocessor_config.json, mri_model.json).
METRICS_FILE = "metrics.json"
LABELS_FILE = "labels.json"
MODEL_CARD = "README.md"  # HuggingFace's name for a model card
ROC_FILE = "roc.png"
CONFUSION_FILE = "confusion.png"
PROMOTION_COLUMNS = (
    "run_id",
    "promoted",
    "reason",
    "metric",
    "margin",
    "test_snapshot",
    "candidate_model_id",
    "candidate_result_id",
    "candidate_value",
    "previous_model_id",
    "previous_value",
    "release",
)
# Named points inside :func:`promote` where a checkpoint callback runs; tests raise there to prove
# that a crash at each point leaves the previous production intact.
CHECKPOINTS = ("bundle_staged", "registry_updated", "bundle_switched")
# Differences below this are float noise, not an improvement.
EPSILON = 1e-12


class PromotionError(RuntimeError):
    """Promotion cannot go ahead; the message says why and what to do."""


class MirrorError(RuntimeError):
    """The promotion committed and ``current`` serves the new release, but copying it to the
    publish target failed: production DID change. The message says how to retry the copy."""

    def __init__(self, model_id: str, release: str, target: str, cause: BaseException):
        super().__init__(
            f"promoted {model_id} (release {release}); mirroring to {target} failed: {cause}. Production is "
            f"{model_id}; clear the deploy_best_model run's promote task to copy it again (a retry of a run "
            "that promoted only mirrors), or fix MRI_PUBLISH_TARGET / MRI_STORAGE_CONN_ID."
        )
        self.model_id, self.release, self.target = model_id, release, target


def checked_metric(metric: str) -> str:
    """``metric`` if it is one of the selectable metric columns, else a ConfigError-style message."""
    if metric not in SELECTION_METRICS:
        raise PromotionError(
            f"Selection metric {metric!r} is not one of {', '.join(SELECTION_METRICS)}; set MRI_SELECTION_METRIC "
            "to one of those."
        )
    return metric


@dataclass(frozen=True)
class Decision:
    """What :func:`decide` concluded, with the numbers it concluded it on (JSON-able for XCom)."""

    promote: bool
    reason: str
    metric: str
    margin: float
    test_snapshot: str | None = None
    model_id: str | None = None
    result_id: str | None = None
    value: float | None = None
    previous_model_id: str | None = None
    previous_value: float | None = None
    # The pick's model ids, best first (for the log and the UI; not stored).
    ranking: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(ranking: Sequence[dict[str, Any]], production_model_id: str | None, metric: str, margin: float) -> Decision:
    """Promote the pick's winner only if it beats production on the same snapshot by ``margin``.

    :param ranking: rows of ``sql/pick_best_model.sql`` (``rank``, ``model_id``, ``result_id``,
        ``test_snapshot``, ``metric_value``), any order.
    :param production_model_id: the model the registry names production now, or None.
    :param metric: the selection metric the ranking was made by.
    :param margin: how much better than production the winner must be.
    """
    checked_metric(metric)
    rows = sorted(ranking, key=lambda row: int(row["rank"]))
    common = {
        "metric": metric,
        "margin": float(margin),
        "previous_model_id": production_model_id,
        "ranking": tuple(str(row["model_id"]) for row in rows),
    }
    if not rows:
        return Decision(
            False,
            f"No fine-tuned model has a {metric} on the latest gated test snapshot; nothing to promote. "
            "test_fine_tuned_model evaluates new models there.",
            **common,
        )
    best = rows[0]
    winner = {
        "test_snapshot": best["test_snapshot"],
        "model_id": best["model_id"],
        "result_id": best["result_id"],
        "value": float(best["metric_value"]),
    }
    snapshot = best["test_snapshot"][:12]
    if production_model_id is None:
        reason = f"First production model: {best['model_id']} ({metric} {winner['value']:.4f} on snapshot {snapshot})."
        return Decision(True, reason, **common, **winner)
    if best["model_id"] == production_model_id:
        reason = f"{best['model_id']} is in production and still the best by {metric} on snapshot {snapshot}."
        return Decision(False, reason, **common, **winner, previous_value=winner["value"])
    current = next((row for row in rows if row["model_id"] == production_model_id), None)
    if current is None:
        reason = (
            f"Production model {production_model_id} has no {metric} on snapshot {snapshot}, so {best['model_id']} "
            "cannot be compared with it on the same data: evaluate the production model on that snapshot "
            "(test_fine_tuned_model) and deploy_best_model decides again."
        )
        return Decision(False, reason, **common, **winner)
    previous_value = float(current["metric_value"])
    gain = winner["value"] - previous_value
    if gain - margin > EPSILON:
        reason = (
            f"{best['model_id']} beats production {production_model_id} by {gain:+.4f} {metric} "
            f"({winner['value']:.4f} vs {previous_value:.4f}, margin {margin}) on snapshot {snapshot}."
        )
        return Decision(True, reason, **common, **winner, previous_value=previous_value)
    reason = (
        f"{best['model_id']} does not beat production {production_model_id} by more than the margin {margin}: "
        f"{metric} {winner['value']:.4f} vs {previous_value:.4f} ({gain:+.4f}) on snapshot {snapshot}."
    )
    return Decision(False, reason, **common, **winner, previous_value=previous_value)


def production_model_id(db: RegistryDatabase) -> str | None:
    """The model the registry names production, or None before the first promotion."""
    rows = db.fetch_all("SELECT model_id FROM models WHERE stage = 'production' ORDER BY model_id")
    if len(rows) > 1:
        raise PromotionError(
            f"{len(rows)} models are in stage production in {db!r}: {[r[0] for r in rows]}. Only promote() "
            "changes stages; set all but one to 'archived' by hand, then run deploy_best_model again."
        )
    return rows[0][0] if rows else None


def _promotion_row(run_id: str, decision: Decision, release: str | None) -> tuple:
    d = decision
    return (
        run_id,
        d.promote,
        d.reason,
        d.metric,
        d.margin,
        d.test_snapshot,
        d.model_id,
        d.result_id,
        d.value,
        d.previous_model_id,
        d.previous_value,
        release,
    )


def record_decision(db: RegistryDatabase, run_id: str, decision: Decision) -> None:
    """Record a decision not to promote (a promotion records itself inside :func:`promote`). Idempotent."""
    with db.transaction() as cursor:
        db.insert_new_rows(cursor, "promotions", PROMOTION_COLUMNS, "run_id", [_promotion_row(run_id, decision, None)])


class LocalBundles:
    """The served bundle on a local file system: ``<root>/releases/<release>/`` and ``<root>/current``.

    ``current`` is a relative symlink to ``releases/<release>``, so the folder can be moved or
    mounted elsewhere as a whole.

    :param root: MRI_PRODUCTION_DIR.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.releases = self.root / "releases"
        self.current = self.root / "current"

    def current_release(self) -> str | None:
        if not self.current.is_symlink():
            if self.current.exists():
                raise PromotionError(
                    f"{self.current} is not the symlink promotion manages (a folder or file put there by hand); "
                    "move it away, then run deploy_best_model again."
                )
            return None
        return Path(os.readlink(self.current)).name

    def release_dir(self, release: str) -> Path:
        return self.releases / release

    def new_staging(self) -> Path:
        """A hidden folder next to the releases (same file system, so the final rename is atomic)."""
        self.releases.mkdir(parents=True, exist_ok=True)
        return self.releases / f".staging-{uuid.uuid4().hex}"

    def finish(self, staging: Path, release: str) -> Path:
        """Make a fully written staging folder a release, in one rename (durable before it is visible)."""
        # Readable by the serving and training users (save_model's temp folders are private, 0700).
        staging.chmod(0o755)
        for path in staging.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
            if path.is_file():
                with open(path, "rb") as handle:
                    os.fsync(handle.fileno())
        target = self.release_dir(release)
        os.rename(staging, target)
        _fsync_dir(self.releases)
        return target

    def switch(self, release: str | None) -> None:
        """Serve ``release`` (None: serve nothing) by replacing the symlink in one rename."""
        if release is None:
            if self.current.is_symlink():
                self.current.unlink()
            return
        if not self.release_dir(release).is_dir():
            raise PromotionError(f"Release {release!r} is not in {self.releases}; cannot serve it.")
        temporary = self.root / f".current-{uuid.uuid4().hex}"
        os.symlink(Path("releases") / release, temporary)
        os.replace(temporary, self.current)
        _fsync_dir(self.root)

    def deployment(self, release: str | None = None) -> dict | None:
        """The deployment record of ``release`` (default: the served one), or None."""
        release = release or self.current_release()
        path = self.release_dir(release) / DEPLOYMENT_FILE if release else None
        return json.loads(path.read_text()) if path and path.is_file() else None

    def prune(self, keep: int = 3) -> None:
        """Delete staging leftovers and all but the newest ``keep`` releases; never the served one."""
        if not self.releases.is_dir():
            return
        served = self.current_release()
        for leftover in self.releases.glob(".staging-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        for stale in self.root.glob(".current-*"):
            stale.unlink(missing_ok=True)
        releases = sorted(
            (p for p in self.releases.iterdir() if p.is_dir() and not p.name.startswith(".")),
            key=lambda p: (self.deployment(p.name) or {}).get("promoted_at", ""),
            reverse=True,
        )
        for old in releases[keep:]:
            if old.name != served:
                shutil.rmtree(old, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StorageMirror:
    """Publish target ``storage:<prefix>``: copy each release into the storage layer (MRI_STORAGE_ROOT).

    Files go to ``<prefix>/releases/<release>/``, then the one-line object ``<prefix>/CURRENT``
    names the release. A single PUT is atomic on S3, and a release's keys are all written before
    the pointer names it, so a reader that follows ``CURRENT`` never sees half a bundle. It runs
    after the registry committed, and is idempotent: a retry writes the same keys again.

    :param prefix: key prefix inside the storage root, e.g. ``production``.
    """

    def __init__(self, prefix: str):
        self.prefix = prefix.strip("/")

    def publish(self, release_dir: Path) -> str:
        from include.storage import get_storage

        storage = get_storage()
        base = f"{self.prefix}/releases/{release_dir.name}"
        for path in sorted(p for p in release_dir.rglob("*") if p.is_file()):
            storage.write(f"{base}/{path.relative_to(release_dir).as_posix()}", path.read_bytes())
        storage.write(f"{self.prefix}/CURRENT", f"{release_dir.name}\n".encode())
        log.info("Mirrored release %s to %s", release_dir.name, storage.uri(base))
        return storage.uri(base)


def publisher(target: str) -> StorageMirror | None:
    """The mirror for MRI_PUBLISH_TARGET (``none`` or ``storage:<prefix>``, validated by the config)."""
    return None if target == "none" else StorageMirror(target.removeprefix("storage:"))


def release_name(model_id: str) -> str:
    """A new folder name per promotion: the model id made file-system safe, and the UTC time."""
    safe = safe_name(model_id).strip(".") or "model"
    return f"{safe}-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}"


def _read_artifact(uri: str | None) -> bytes | None:
    """A picture the evaluation wrote: a local path, or a URI inside MRI_STORAGE_ROOT."""
    if not uri:
        return None
    if "://" in uri:
        from include.storage import get_storage

        storage = get_storage()
        return storage.read(storage.key(uri))
    path = Path(uri)
    return path.read_bytes() if path.is_file() else None


def _labels(model_dir: Path) -> list[str]:
    config = model_dir / "config.json"
    if not config.is_file():
        raise PromotionError(
            f"{model_dir} has no config.json: models.path must be the model's save_pretrained folder "
            "(include.ml.bundle.save_model writes one)."
        )
    id2label = json.loads(config.read_text()).get("id2label") or {}
    return [id2label[key] for key in sorted(id2label, key=int)]


def build_bundle(db: RegistryDatabase, decision: Decision, run_id: str, release: str, staging: Path) -> None:
    """Write the serving bundle of ``decision.model_id`` into ``staging`` (which must not exist yet).

    The model's save_pretrained folder as it is (weights, config with the label map, image
    processor config, mri_model.json), plus the label map on its own, the metrics, the ROC and
    confusion pictures, a model card and the deployment record.
    """
    p = db.placeholder
    [model] = db.fetch_all(
        f"SELECT model_id, base_model, CAST(hyperparameters AS TEXT), train_snapshot, path, created_at "
        f"FROM models WHERE model_id = {p}",
        (decision.model_id,),
    )
    [result] = db.fetch_all(
        "SELECT result_id, test_snapshot, loss, accuracy, precision, recall, f1, roc_auc, "
        f"CAST(confusion_matrix AS TEXT), evaluated_at, images, roc_png, confusion_png FROM model_results "
        f"WHERE result_id = {p}",
        (decision.result_id,),
    )
    model_dir = Path(model[4])
    if not model_dir.is_dir():
        raise PromotionError(
            f"Model {decision.model_id}'s folder {model_dir} (models.path) is missing; restore it, or let "
            "deploy_best_model pick among models whose folders exist."
        )
    labels = _labels(model_dir)
    shutil.copytree(model_dir, staging)
    metrics = dict(zip(METRIC_NAMES, result[2:8], strict=True))
    evaluation = {
        "result_id": result[0],
        "test_snapshot": result[1],
        "metrics": metrics,
        "confusion_matrix": json.loads(result[8]),
        "evaluated_at": str(result[9]),
        "images": result[10],
    }
    (staging / LABELS_FILE).write_text(json.dumps({"labels": labels, "id2label": dict(enumerate(labels))}, indent=2))
    (staging / METRICS_FILE).write_text(json.dumps(evaluation, indent=2, default=str))
    pictures = {}
    for name, uri in ((ROC_FILE, result[11]), (CONFUSION_FILE, result[12])):
        data = _read_artifact(uri)
        if data:
            (staging / name).write_bytes(data)
            pictures[name] = True
    deployment = {
        "release": release,
        "model_id": decision.model_id,
        "promoted_at": datetime.now(UTC).isoformat(),
        "run_id": run_id,
        "metric": decision.metric,
        "value": decision.value,
        "margin": decision.margin,
        "previous_model_id": decision.previous_model_id,
        "previous_value": decision.previous_value,
        "test_snapshot": decision.test_snapshot,
        "train_snapshot": model[3],
        "labels": labels,
    }
    card = model_card(
        deployment, base_model=model[1], hyperparameters=json.loads(model[2]), evaluation=evaluation, pictures=pictures
    )
    (staging / MODEL_CARD).write_text(card)
    (staging / DEPLOYMENT_FILE).write_text(json.dumps(deployment, indent=2))


def model_card(
    deployment: dict, base_model: str, hyperparameters: dict, evaluation: dict, pictures: dict[str, bool]
) -> str:
    """The bundle's README.md: what the model is, what it was trained and tested on, how well it did."""
    labels = deployment["labels"]
    metrics = evaluation["metrics"]
    lines = [
        f"# {deployment['model_id']}",
        "",
        f"Brain MRI slice classifier ({', '.join(labels)}), promoted to production by `deploy_best_model` "
        f"at {deployment['promoted_at']} (run `{deployment['run_id']}`, release `{deployment['release']}`).",
        "",
        f"Selected by **{deployment['metric']}** = {deployment['value']:.4f} on the gated test snapshot; "
        + (
            f"it replaced `{deployment['previous_model_id']}` ({deployment['previous_value']:.4f} "
            f"on the same snapshot, margin {deployment['margin']})."
            if deployment["previous_model_id"] and deployment["previous_value"] is not None
            else "it is the first production model."
        ),
        "",
        "## Data",
        "",
        "| | snapshot |",
        "|---|---|",
        f"| train | `{deployment['train_snapshot']}` |",
        f"| test | `{deployment['test_snapshot']}` ({evaluation['images'] or '?'} images) |",
        "",
        "## Model",
        "",
        f"Base model `{base_model}`; labels (index order) {', '.join(f'{i} `{n}`' for i, n in enumerate(labels))}.",
        "",
        "Hyperparameters:",
        "",
        "```json",
        json.dumps(hyperparameters, indent=2, sort_keys=True),
        "```",
        "",
        "## Metrics on the test snapshot",
        "",
        "| metric | value |",
        "|---|---:|",
        *(f"| {name} | {'-' if value is None else f'{value:.4f}'} |" for name, value in metrics.items()),
        "",
        "Confusion matrix (rows: true label, columns: predicted):",
        "",
        "| | " + " | ".join(labels) + " |",
        "|---" * (len(labels) + 1) + "|",
        *(
            f"| {label} | " + " | ".join(str(n) for n in row) + " |"
            for label, row in zip(labels, evaluation["confusion_matrix"], strict=False)
        ),
        "",
    ]
    if pictures.get(ROC_FILE):
        lines += ["## ROC curve", "", f"![ROC curve]({ROC_FILE})", ""]
    if pictures.get(CONFUSION_FILE):
        lines += [f"![Confusion matrix]({CONFUSION_FILE})", ""]
    lines += [
        "## Use",
        "",
        '`make predict IMAGES="a.jpg b.png"` prints class probabilities; '
        "`include.ml.bundle.load_model(<this folder>)` loads it in Python.",
        "",
    ]
    return "\n".join(lines)


def _no_checkpoint(point: str) -> None:
    """Production code passes nothing here; tests raise at a named point."""


def promote(
    db: RegistryDatabase,
    decision: Decision,
    run_id: str,
    bundles: LocalBundles,
    mirror: StorageMirror | None = None,
    checkpoint: Callable[[str], None] = _no_checkpoint,
) -> str:
    """Make ``decision.model_id`` production in the registry and on disk, together; return the release.

    Idempotent: a retry of a run that already promoted only re-mirrors.

    :param db: the registry database.
    :param decision: a decision to promote, from :func:`decide`.
    :param run_id: the deciding run (the promotions row's key).
    :param bundles: where the served bundle lives.
    :param mirror: optional second publish target, written after the commit.
    :param checkpoint: called with each name in :data:`CHECKPOINTS` as promotion passes it.
    :raises MirrorError: when only the copy to ``mirror`` failed (production did change).
    """
    if not decision.promote:
        raise PromotionError(f"promote() got a decision not to promote: {decision.reason}")
    p = db.placeholder
    done = db.fetch_all(f"SELECT release FROM promotions WHERE run_id = {p} AND promoted", (run_id,))
    if done:
        release = done[0][0]
        log.info("Run %s already promoted %s (release %s)", run_id, decision.model_id, release)
    else:
        release = _promote_once(db, decision, run_id, bundles, checkpoint)
    if mirror is not None:
        try:
            mirror.publish(bundles.release_dir(release))
        except Exception as err:
            # After the commit and the switch: not a failed promotion, and must not be reported as one.
            raise MirrorError(decision.model_id, release, f"storage:{mirror.prefix}", err) from err
    return release


def _promote_once(
    db: RegistryDatabase, decision: Decision, run_id: str, bundles: LocalBundles, checkpoint: Callable[[str], None]
) -> str:
    p = db.placeholder
    release = release_name(decision.model_id)
    previous_release = bundles.current_release()
    # 1. The bundle, complete and durable, under a new name: nothing serves it yet.
    staging = bundles.new_staging()
    try:
        build_bundle(db, decision, run_id, release, staging)
        bundles.finish(staging, release)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("Bundle of %s written to %s", decision.model_id, bundles.release_dir(release))
    checkpoint("bundle_staged")
    # 2. Stages and the promotions row in one transaction, the symlink switched just before the
    #    commit; any failure through the commit undoes both.
    switched = False
    try:
        with db.transaction() as cursor:
            cursor.execute("SELECT model_id FROM models WHERE stage = 'production'")
            now = sorted(row[0] for row in cursor.fetchall())
            expected = [decision.previous_model_id] if decision.previous_model_id else []
            if now != expected:
                raise PromotionError(
                    f"Production changed since the decision: it was {expected or 'none'}, it is {now or 'none'}. "
                    "Nothing was changed; the next deploy_best_model run decides again."
                )
            cursor.execute("UPDATE models SET stage = 'archived' WHERE stage = 'production'")
            cursor.execute(f"UPDATE models SET stage = 'production' WHERE model_id = {p}", (decision.model_id,))
            db.insert_new_rows(
                cursor, "promotions", PROMOTION_COLUMNS, "run_id", [_promotion_row(run_id, decision, release)]
            )
            checkpoint("registry_updated")
            bundles.switch(release)
            switched = True
            checkpoint("bundle_switched")
    except BaseException:
        if switched:
            bundles.switch(previous_release)
            log.error("Promotion of %s failed before its commit; serving %s again", decision.model_id, previous_release)
        raise
    log.info("Promoted %s (release %s), archived %s", decision.model_id, release, decision.previous_model_id)
    bundles.prune()
    return release


def reconcile(db: RegistryDatabase, bundles: LocalBundles) -> str | None:
    """Point ``current`` at the registry's production model if they disagree; return what is served.

    They disagree only if a process died between the symlink switch and the commit (no exception
    handler ran). The registry is the truth; the newest release of its production model is served.
    """
    production = production_model_id(db)
    served = (bundles.deployment() or {}).get("model_id")
    if served == production:
        return bundles.current_release()
    candidates = []
    if bundles.releases.is_dir():
        for path in bundles.releases.iterdir():
            record = bundles.deployment(path.name) if not path.name.startswith(".") else None
            if record and record["model_id"] == production:
                candidates.append((record["promoted_at"], path.name))
    if production is not None and not candidates:
        log.error(
            "Registry names %s production but no release of it is in %s; the next promotion publishes one.",
            production,
            bundles.releases,
        )
        return bundles.current_release()
    release = max(candidates)[1] if candidates else None
    log.warning("Served bundle (%s) disagreed with the registry (%s); now serving %s", served, production, release)
    bundles.switch(release)
    return release
