"""HuggingFace fine-tune, baseline and evaluate operators: thin Airflow adapters over ``include.ml``.

In the provider style: ``template_fields``, an ``__init__`` that only stores, an ``execute`` that
resolves settings and data, calls one ``include.ml`` function and returns a small JSON-able dict
(ids, paths, metrics; never tensors or images). torch and transformers are imported inside
``execute``, so parsing a DAG that uses these never loads them.

Each reads one named snapshot (the one a quality gate passed when the DAG planned the work, so a
retry reads the same images), by the images' registered URIs through the storage layer (a local
folder or S3); no temp folders. Every file read must have the SHA-256 the snapshot recorded: a file
changed after the gate passed fails the task at once (no retry), naming it. The baseline and
evaluate tasks run in the registry pool and write their rows; the fine-tune, minutes long, runs
outside it and opens no registry (its DAG records the model).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from include.config import settings
from include.wiring.compat import AirflowFailException, BaseOperator


def _snapshot_data(split: str, snapshot_id: str | None) -> tuple[Any, Any, list[tuple[str, str, str]], Any]:
    """The registry, the snapshot, its ``(uri, label, sha256)`` items and a reader of URIs.

    ``snapshot_id`` is the snapshot the DAG picked when it planned the work: a retried or cleared task
    reads the same images even after a newer snapshot passed its gate. Without one (the operator used
    on its own), the newest gated snapshot of ``split`` now.
    """
    from include.db import get_database
    from include.registry.snapshots import load_snapshot, passed_snapshot
    from include.storage import get_storage

    db, storage = get_database(), get_storage()
    snapshot = load_snapshot(db, snapshot_id) if snapshot_id else passed_snapshot(db, split)
    if snapshot.split != split:
        raise AirflowFailException(
            f"Snapshot {snapshot.snapshot_id} is of split {snapshot.split!r}, not {split!r}: pass a {split} snapshot."
        )
    return (
        db,
        snapshot,
        # The hash the gate passed travels with each item: include.ml checks every read against it.
        [(image.uri, image.label, image.content_hash) for image in snapshot.images],
        lambda uri: storage.read(storage.key(uri)),
    )


def _limit_threads() -> None:
    if settings().torch_threads:
        import torch

        torch.set_num_threads(settings().torch_threads)


class FineTuneImageClassifierOperator(BaseOperator):
    """Fine-tune the base model (MRI_MODEL_SOURCE) on a gated train snapshot and save one bundle under
    ``models_dir``; return what the ``models`` row needs (the DAG's ``record_models`` writes it).

    It never opens the registry: it runs for minutes outside the registry pool, so the snapshot's
    members come from the file the planning task wrote (``include/training/members.py``).

    :param members: the gated snapshot's members, as ``include.training.members.write_members``
        returned them (templated): a retry reads the same images even after a newer snapshot passed.
    :param hyperparameters: overrides of the configured base hyperparameters, names of
        ``include.ml.hyperparameters.TrainConfig`` (templated).
    :param model_source: the base model; default MRI_MODEL_SOURCE (templated).
    :param models_dir: the folder of model bundles; default MRI_MODELS_DIR (templated).
    """

    template_fields: Sequence[str] = ("members", "hyperparameters", "model_source", "models_dir")
    ui_color = "#fcd9a8"

    def __init__(
        self,
        *,
        members: dict,
        hyperparameters: dict | None = None,
        model_source: str | None = None,
        models_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.members = members
        self.hyperparameters = hyperparameters
        self.model_source = model_source
        self.models_dir = models_dir

    def execute(self, context: Any) -> dict:
        from include.ml.data import ContentChanged, LabelMismatch
        from include.ml.hyperparameters import TrainConfig
        from include.ml.train import TrainingDiverged, train_and_save
        from include.storage import get_storage
        from include.training.members import read_members
        from include.training.records import TRAINING_FACTS, base_hyperparameters, derived_id

        cfg, run_id = settings(), context["run_id"]
        try:  # a bad hyperparameter or a diverging run fails the same way every time: no retry
            config = TrainConfig.from_dict(
                {**base_hyperparameters(cfg), **(self.hyperparameters or {})}, f"{self.task_id} hyperparameters"
            )
        except ValueError as err:
            raise AirflowFailException(str(err)) from None
        model_id = derived_id("ft", self.dag_id, run_id, context["ti"].map_index)
        directory = Path(self.models_dir or cfg.models_dir) / model_id
        done = _saved_fine_tune(directory, model_id)
        if done is not None:
            # A retried or cleared task: the bundle is whole (save_model renames it into place).
            # Retraining would replace it while its row (ON CONFLICT DO NOTHING) stays, and the two would disagree.
            self.log.info("%s is already trained (bundle %s): not retraining", model_id, directory)
            return done
        storage, snapshot_id = get_storage(), self.members["snapshot_id"]
        source = self.model_source or cfg.model_source
        _limit_threads()
        facts = {"model_id": model_id, "role": "fine_tuned", "train_snapshot": snapshot_id, "run_id": run_id}
        try:
            items = read_members(storage, self.members)
            self.log.info(
                "Fine-tuning %s from %s on snapshot %s (%s images)", model_id, source, snapshot_id, len(items)
            )
            summary = train_and_save(
                items,
                lambda uri: storage.read(storage.key(uri)),
                cfg.labels,
                source,
                config,
                directory,
                facts,
                Path(cfg.production_dir),
            )
        except (TrainingDiverged, ContentChanged, LabelMismatch) as err:  # the same every time: no retry
            raise AirflowFailException(str(err)) from None
        self.log.info(
            "Saved %s to %s: validation %s after %s epochs",
            model_id,
            directory,
            summary["validation"],
            summary["epochs_run"],
        )
        return {**facts, **{name: summary[name] for name in (*TRAINING_FACTS, "path")}}


def _saved_fine_tune(directory: Path, model_id: str) -> dict | None:
    """What the fine-tune of ``model_id`` returned, if its whole bundle is in ``directory``; else None."""
    from include.ml.bundle import missing_files, read_metadata
    from include.training.records import TRAINING_FACTS

    if missing_files(directory):
        return None
    metadata = read_metadata(directory)
    if metadata.get("model_id") != model_id:
        return None
    facts = {name: metadata[name] for name in ("model_id", "role", "train_snapshot", "run_id")}
    return {**facts, **{name: metadata.get(name) for name in TRAINING_FACTS}, "path": str(directory)}


class BaselineImageClassifierOperator(BaseOperator):
    """Save the base model (MRI_MODEL_SOURCE) with a fresh, untrained head as a ``baseline`` model
    and add its ``models`` row: the reference every fine-tuned model's numbers stand beside.

    :param model_source: the base model; default MRI_MODEL_SOURCE (templated).
    :param models_dir: the folder of model bundles; default MRI_MODELS_DIR (templated).
    """

    template_fields: Sequence[str] = ("model_source", "models_dir")
    ui_color = "#e8e8e8"

    def __init__(self, *, model_source: str | None = None, models_dir: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model_source = model_source
        self.models_dir = models_dir

    def execute(self, context: Any) -> dict:
        from include.db import get_database
        from include.ml.train import build_baseline
        from include.training.records import UNTRAINED, derived_id, record_model

        cfg, run_id = settings(), context["run_id"]
        model_id = derived_id("baseline", self.dag_id, run_id)
        directory = Path(self.models_dir or cfg.models_dir) / model_id
        facts = {"model_id": model_id, "role": "baseline", "train_snapshot": UNTRAINED, "run_id": run_id}
        source = self.model_source or cfg.model_source
        summary = build_baseline(
            source, cfg.labels, cfg.train_image_size, 0, directory, facts, Path(cfg.production_dir)
        )
        record_model(
            get_database(),
            model_id,
            summary["base_model"],
            summary["hyperparameters"],
            UNTRAINED,
            str(directory),
            "baseline",
            run_id,
        )
        self.log.info("Saved the untrained baseline %s of %s to %s", model_id, summary["base_model"], directory)
        return {**facts, "path": str(directory), "base_model": summary["base_model"]}


class LearnedBaselineOperator(BaseOperator):
    """Fit the learned baseline (``include.ml.learned_baseline``: a logistic regression on 32 px grey
    levels) on a gated train snapshot and evaluate it on a gated test snapshot: one ``models`` row
    (role ``learned_baseline``) and one ``model_results`` row, as a fine-tuned model gets. Seconds
    of work, so fitting and evaluating are one task.

    :param train_snapshot_id: the gated train snapshot to fit on (templated).
    :param test_snapshot_id: the gated test snapshot to evaluate on (templated).
    :param models_dir: where its folder goes; default MRI_MODELS_DIR (templated).
    :param evaluations_dir: where the pictures go; default MRI_EVALUATIONS_DIR (templated).
    """

    template_fields: Sequence[str] = ("train_snapshot_id", "test_snapshot_id", "models_dir", "evaluations_dir")
    ui_color = "#e8e8e8"

    def __init__(
        self,
        *,
        train_snapshot_id: str,
        test_snapshot_id: str,
        models_dir: str | None = None,
        evaluations_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.train_snapshot_id = train_snapshot_id
        self.test_snapshot_id = test_snapshot_id
        self.models_dir = models_dir
        self.evaluations_dir = evaluations_dir

    def execute(self, context: Any) -> dict:
        from include.ml import learned_baseline
        from include.ml.data import ContentChanged, read_images
        from include.ml.evaluate import evaluate_probabilities
        from include.training.records import LEARNED_BASELINE, derived_id, record_model, record_result

        cfg, run_id = settings(), context["run_id"]
        db, train, train_items, read = _snapshot_data("train", self.train_snapshot_id)
        _, test, test_items, _ = _snapshot_data("test", self.test_snapshot_id)
        # The snapshots are part of the id: a run cleared after a newer snapshot passed fits a new
        # model (its own folder and row) instead of refitting this one under a row that names the old.
        model_id = derived_id(LEARNED_BASELINE, self.dag_id, run_id, train.snapshot_id, test.snapshot_id)
        directory = Path(self.models_dir or cfg.models_dir) / model_id
        try:
            fitted_on = read_images(train_items, read, cfg.labels)
            model = learned_baseline.fit(fitted_on.images, fitted_on.targets, cfg.labels)
            evaluated_on = read_images(test_items, read, cfg.labels)
        except (ContentChanged, ValueError) as err:  # a changed file, a missing label: the same on a retry
            raise AirflowFailException(str(err)) from None
        # The same snapshot gives the same model (lbfgs), so a retry rewrites the same file.
        model.save(directory)
        record_model(
            db,
            model_id,
            learned_baseline.DESCRIPTION,
            model.hyperparameters,
            train.snapshot_id,
            str(directory),
            LEARNED_BASELINE,
            run_id,
        )
        result_id = derived_id("result", run_id, model_id, test.snapshot_id)
        out_dir = Path(self.evaluations_dir or cfg.evaluations_dir) / model_id / result_id
        evaluation = evaluate_probabilities(
            list(model.labels),
            model.predict_proba(evaluated_on.images),
            evaluated_on.targets,
            out_dir,
            f"{model_id} ({LEARNED_BASELINE})\ntest snapshot {test.snapshot_id[:12]}",
            keys=[item[2] for item in test_items],
            resamples=cfg.bootstrap_resamples,
        )
        record_result(db, result_id, model_id, test.snapshot_id, evaluation, run_id)
        self.log.info(
            "%s, fitted on %s images of %s: ROC AUC %s, accuracy %.3f on %s test images",
            model_id,
            len(train_items),
            train.snapshot_id[:12],
            evaluation["roc_auc"],
            evaluation["accuracy"],
            evaluation["images"],
        )
        return {
            "model_id": model_id,
            "role": LEARNED_BASELINE,
            "result_id": result_id,
            "train_snapshot": train.snapshot_id,
            "test_snapshot": test.snapshot_id,
            **evaluation,
        }


class EvaluateImageClassifierOperator(BaseOperator):
    """Evaluate a recorded model on the test snapshot a quality gate passed: metrics on probabilities,
    a ROC and a confusion-matrix PNG, and one new ``model_results`` row (history is never overwritten).

    :param model_id: the ``models`` row to evaluate (templated).
    :param evaluations_dir: where the pictures go, ``<dir>/<model_id>/<result_id>/``; default
        MRI_EVALUATIONS_DIR (templated).
    :param split: the gated split to evaluate on (templated).
    :param snapshot_id: the gated test snapshot (templated); default: the newest gated one of ``split``
        when the task runs. Pin it (test_fine_tuned_model does) so a retry evaluates on the same data.
    """

    template_fields: Sequence[str] = ("model_id", "evaluations_dir", "split", "snapshot_id")
    ui_color = "#c9e4f5"

    def __init__(
        self,
        *,
        model_id: str,
        evaluations_dir: str | None = None,
        split: str = "test",
        snapshot_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_id = model_id
        self.evaluations_dir = evaluations_dir
        self.split = split
        self.snapshot_id = snapshot_id

    def execute(self, context: Any) -> dict:
        from include.ml.bundle import BundleError
        from include.ml.data import ContentChanged, LabelMismatch
        from include.ml.evaluate import evaluate_bundle
        from include.training.records import derived_id, model_location, record_result

        db, snapshot, items, read = _snapshot_data(self.split, self.snapshot_id)
        path, role = model_location(db, self.model_id)
        result_id = derived_id("result", context["run_id"], self.model_id, snapshot.snapshot_id)
        out_dir = Path(self.evaluations_dir or settings().evaluations_dir) / self.model_id / result_id
        _limit_threads()
        title = f"{self.model_id} ({role})\ntest snapshot {snapshot.snapshot_id[:12]}"
        try:
            evaluation = evaluate_bundle(
                Path(path), items, read, out_dir, title, settings().labels, settings().bootstrap_resamples
            )
        except (ContentChanged, LabelMismatch, BundleError) as err:
            # A changed file, a model of other labels, a damaged bundle: a retry fails the same way.
            raise AirflowFailException(str(err)) from None
        record_result(db, result_id, self.model_id, snapshot.snapshot_id, evaluation, context["run_id"])
        self.log.info(
            "%s on %s images: ROC AUC %s, accuracy %.3f; pictures in %s",
            self.model_id,
            evaluation["images"],
            evaluation["roc_auc"],
            evaluation["accuracy"],
            out_dir,
        )
        return {
            "model_id": self.model_id,
            "role": role,
            "result_id": result_id,
            "test_snapshot": snapshot.snapshot_id,
            **evaluation,
        }
