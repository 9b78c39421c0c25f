"""The three ML DAGs (dags/train_model.py, dags/test_baseline_model.py, dags/test_fine_tuned_model.py).

Training and evaluation take only a snapshot a quality gate passed. The work is in the operators
(``include/training/operators.py``) and ``include.ml``; torch is imported inside tasks, never at parse time.
"""

from __future__ import annotations

import logging

from include.config import settings
from include.training.operators import (
    BaselineImageClassifierOperator,
    EvaluateImageClassifierOperator,
    FineTuneImageClassifierOperator,
    LearnedBaselineOperator,
)
from include.wiring.compat import DAG, AirflowFailException, AirflowSkipException, Param, task
from include.wiring.datasets import GATE_PASSED, MODEL_EVALUATED, MODEL_TRAINED
from include.wiring.defaults import pipeline_dag
from include.wiring.notifications import notify_on
from include.wiring.setup import apply_db_migrations

log = logging.getLogger(__name__)

# The success messages are what the publishing task returned (rendered by the notifier).
OWN_MESSAGE = "{{ ti.xcom_pull(task_ids=ti.task_id)['message'] }}"
# A field of what the notifying task returned, as a template: OWN["roc_auc"].
# The label of a fine_tune in the UI; short and bounded: the metadata DB's rendered_map_index is a
# VARCHAR(250), and a whole sweep entry can be longer (the task would fail after training).
SWEEP_ENTRY_LABEL = (
    "{{ ('entry ' ~ ti.map_index ~ ', lr ' ~ (task.hyperparameters or {}).get('learning_rate', 'default'))[:100] }}"
)
OWN = {name: f"{{{{ ti.xcom_pull(task_ids=ti.task_id)['{name}'] }}}}" for name in ("model_id", "roc_auc", "accuracy")}


def build_train_model_dag(doc_md: str) -> DAG:
    """gate passed (train) -> plan the sweep -> one fine-tune per configuration -> model_trained.

    :param doc_md: the DAG file's docstring, shown in the UI.
    """
    cfg = settings()

    @pipeline_dag(
        "train_model",
        [GATE_PASSED["train"]],
        doc_md,
        ["ml", "train"],
        params={
            "sweep": Param(
                list(cfg.train_sweep),
                type="array",
                description="One fine-tuned model per entry: overrides of the base hyperparameters "
                "(MRI_TRAIN_EPOCHS, ...), names of include.ml.hyperparameters.TrainConfig; an entry "
                'with "seeds": [0, 1, 2] trains one model per seed and reports their spread.',
            )
        },
    )
    def train_model():
        @task(pool=cfg.db_pool)
        def plan_sweep(**context) -> list[dict]:
            """Check every entry now (a typo fails here, not after an hour of training) and pick the
            gated train snapshot: its members go to the storage for the fine-tunes (which open no
            registry), so a retry trains on the same images even after a newer snapshot passed its gate."""
            from include.db import get_database
            from include.ml.hyperparameters import TrainConfig, expand_seeds
            from include.registry.snapshots import passed_snapshot
            from include.storage import get_storage
            from include.training.members import write_members
            from include.training.records import base_hyperparameters

            try:
                sweep = expand_seeds(context["params"]["sweep"], "train_model sweep")
            except ValueError as err:
                raise AirflowFailException(str(err)) from None
            for number, entry in enumerate(sweep):
                TrainConfig.from_dict({**base_hyperparameters(cfg), **entry}, f"train_model sweep entry {number}")
            snapshot = passed_snapshot(get_database(), "train")
            members = write_members(get_storage(), snapshot)
            log.info(
                "Sweep of %s on train snapshot %s (%s images, members in %s): %s",
                len(sweep),
                snapshot.snapshot_id,
                len(snapshot.images),
                members["key"],
                sweep,
            )
            return [{"hyperparameters": entry, "members": members} for entry in sweep]

        plan = plan_sweep()
        # Not in the registry pool: a fine-tune holds its slot for minutes, and the registry pool has
        # one slot on DuckDB. It opens no registry; record_models writes its row.
        fine_tune = FineTuneImageClassifierOperator.partial(
            task_id="fine_tune",
            pool=cfg.training_pool,
            queue=cfg.training_queue,
            # A diverging run or a bad hyperparameter fails at once (AirflowFailException); one retry
            # covers a lost worker. Each try has the same model id and snapshot; a try that finds the
            # model's bundle whole returns it instead of training again.
            retries=1,
            map_index_template=SWEEP_ENTRY_LABEL,
            **notify_on(
                success="trained {{ ti.xcom_pull(task_ids=ti.task_id, map_indexes=ti.map_index)['model_id'] }}",
                failure="fine-tuning failed (sweep entry {{ ti.map_index }}); no model was saved for it",
            ),
        ).expand_kwargs(plan)

        # Once every fine-tune is done, failed or not: a saved model always gets its row.
        @task(pool=cfg.db_pool, trigger_rule="all_done")
        def record_models(results: list[dict] | None) -> list[str]:
            """Add the ``models`` row of every model the sweep saved (a retry adds nothing)."""
            from include.db import get_database
            from include.training.records import record_model

            db, results = get_database(), list(results or [])
            for r in results:
                record_model(
                    db,
                    r["model_id"],
                    r["base_model"],
                    r["hyperparameters"],
                    r["train_snapshot"],
                    r["path"],
                    r["role"],
                    r["run_id"],
                    r["validation"],
                )
            log.info("Recorded %s models: %s", len(results), [r["model_id"] for r in results])
            return [r["model_id"] for r in results]

        @task(
            outlets=[MODEL_TRAINED],
            multiple_outputs=False,
            **notify_on(success=OWN_MESSAGE, failure="publishing trained models failed"),
        )
        def publish_models(results: list[dict]) -> dict:
            """Runs after every model of the sweep is saved and recorded: evaluation may start."""
            from include.ml.hyperparameters import seed_spread

            results = list(results)
            lines = [
                f"{r['model_id']} (lr {r['hyperparameters']['learning_rate']}, seed {r['hyperparameters']['seed']}, "
                f"{r['epochs_run']} epochs): validation ROC AUC {r['validation'].get('roc_auc')}"
                for r in results
            ]
            spread = seed_spread(results)
            message = (
                f"{len(results)} fine-tuned models on train snapshot {results[0]['train_snapshot'][:12]}: "
                + "; ".join(lines)
                + "".join(
                    f" | seeds {s['seeds']} of lr {s['hyperparameters']['learning_rate']}: validation ROC AUC "
                    f"mean {s['mean']:.4f}, sd {s['sd']:.4f}"
                    for s in spread
                )
            )
            log.info("%s", message)
            return {"models": [r["model_id"] for r in results], "seed_spread": spread, "message": message}

        apply_db_migrations() >> plan
        record_models(fine_tune.output) >> publish_models(fine_tune.output)

    return train_model()


def build_test_baseline_dag(doc_md: str) -> DAG:
    """gate passed (test or train), or models trained -> the two baselines on the newest gated test
    snapshot, each once:
    the base model with an untrained head (chance), and the learned baseline fitted on the newest
    gated train snapshot (the floor a promotion must clear) -> model_evaluated.

    :param doc_md: the DAG file's docstring, shown in the UI.
    """
    cfg = settings()
    snapshot = "{{{{ ti.xcom_pull(task_ids='plan_baselines', key='snapshots')['{}'] }}}}"

    # Either gate: the learned baseline needs both snapshots, and they pass in either order. And each
    # sweep: a registry from before the learned baseline, or one whose fit failed, gets one then
    # (plan_baselines skips what is done, so a run with nothing to do costs one task).
    @pipeline_dag(
        "test_baseline_model",
        (GATE_PASSED["test"] | GATE_PASSED["train"] | MODEL_TRAINED),
        doc_md,
        ["ml", "test"],
    )
    def test_baseline_model():
        @task.branch(pool=cfg.db_pool)
        def plan_baselines(**context) -> list[str]:
            """Which baseline the newest gated snapshots still lack a result for; none (all skipped)
            without a gated test snapshot. The snapshots are pinned here, so a retry uses the same."""
            from include.db import get_database
            from include.registry.snapshots import NoGatedSnapshotError, passed_snapshot
            from include.training.records import has_learned_baseline, latest_result

            db = get_database()
            try:
                test = passed_snapshot(db, "test").snapshot_id
            except NoGatedSnapshotError as err:
                log.info("No baseline to evaluate yet: %s", err)
                return []
            try:
                train = passed_snapshot(db, "train").snapshot_id
            except NoGatedSnapshotError as err:
                train = None
                log.info("The learned baseline waits for a gated train snapshot: %s", err)
            context["ti"].xcom_push(key="snapshots", value={"test": test, "train": train})
            follow = [] if latest_result(db, "baseline", test) else ["prepare_baseline"]
            if train and not has_learned_baseline(db, train, test):
                follow.append("fit_learned_baseline")
            log.info("On test snapshot %s (train %s): %s", test, train, follow or "both baselines are evaluated")
            return follow

        plan = plan_baselines()
        prepared = BaselineImageClassifierOperator(task_id="prepare_baseline", pool=cfg.db_pool)
        evaluate = EvaluateImageClassifierOperator(
            task_id="evaluate_baseline",
            model_id="{{ ti.xcom_pull(task_ids='prepare_baseline')['model_id'] }}",
            snapshot_id=snapshot.format("test"),
            pool=cfg.db_pool,
            # Deploying compares with the baselines: a result arriving after the fine-tuned ones
            # must start the decision again.
            outlets=[MODEL_EVALUATED],
            **notify_on(
                success=f"baseline {OWN['model_id']}: ROC AUC {OWN['roc_auc']}, accuracy {OWN['accuracy']}",
                failure="evaluating the baseline failed",
            ),
        )
        learned = LearnedBaselineOperator(
            task_id="fit_learned_baseline",
            train_snapshot_id=snapshot.format("train"),
            test_snapshot_id=snapshot.format("test"),
            pool=cfg.db_pool,
            outlets=[MODEL_EVALUATED],
            **notify_on(
                success=f"learned baseline {OWN['model_id']}: ROC AUC {OWN['roc_auc']}, accuracy {OWN['accuracy']}",
                failure="fitting or evaluating the learned baseline failed",
            ),
        )
        apply_db_migrations() >> plan >> [prepared, learned]
        prepared >> evaluate

    return test_baseline_model()


def build_test_fine_tuned_dag(doc_md: str) -> DAG:
    """model trained, or gate passed (test) -> every fine-tuned model with no result on the latest
    gated test snapshot -> evaluated -> model_evaluated.

    One model blocks no other: a model trained on other labels than MRI_LABELS is passed over (with
    the reason, on every run, without trying), and one whose evaluation fails fails alone; the
    others are published (the deploy decides among what was evaluated).

    :param doc_md: the DAG file's docstring, shown in the UI.
    """
    cfg = settings()

    @pipeline_dag("test_fine_tuned_model", (MODEL_TRAINED | GATE_PASSED["test"]), doc_md, ["ml", "test"])
    def test_fine_tuned_model():
        @task(pool=cfg.db_pool)
        def find_unevaluated_models(**context) -> list[dict]:
            """New models, or every model when the test snapshot is new; nothing is evaluated twice.
            Each evaluate gets the snapshot picked here, so a retry evaluates on the same images.
            Models trained on other labels than MRI_LABELS are left out with the reason (XCom
            ``unevaluable``, named by publish_results): evaluating one fails every time."""
            from include.db import get_database
            from include.registry.snapshots import NoGatedSnapshotError, passed_snapshot
            from include.training.records import models_to_evaluate, unevaluable_models

            db = get_database()
            try:
                snapshot = passed_snapshot(db, "test")
            except NoGatedSnapshotError as err:
                raise AirflowSkipException(f"Nothing to evaluate on yet: {err}") from None
            model_ids = models_to_evaluate(db, snapshot.snapshot_id)
            unevaluable = unevaluable_models(db, model_ids, cfg.labels)
            for model_id, reason in unevaluable.items():
                log.warning("Not evaluating %s: %s", model_id, reason)
            context["ti"].xcom_push(key="unevaluable", value=unevaluable)
            model_ids = [model_id for model_id in model_ids if model_id not in unevaluable]
            log.info("%s models to evaluate on test snapshot %s: %s", len(model_ids), snapshot.snapshot_id, model_ids)
            return [{"model_id": model_id, "snapshot_id": snapshot.snapshot_id} for model_id in model_ids]

        found = find_unevaluated_models()
        evaluate = EvaluateImageClassifierOperator.partial(
            task_id="evaluate",
            pool=cfg.db_pool,
            map_index_template="{{ task.model_id }}",
            **notify_on(success="evaluated {{ task.model_id }}", failure="evaluating {{ task.model_id }} failed"),
        ).expand_kwargs(found)

        @task(
            pool=cfg.db_pool,
            outlets=[MODEL_EVALUATED],
            multiple_outputs=False,
            # Once every evaluate is done, failed or not: one model that cannot be evaluated must not
            # keep the others' results from the deploy. What ran is checked below.
            trigger_rule="all_done",
            **notify_on(success=OWN_MESSAGE, failure="publishing evaluations failed"),
        )
        def publish_results(planned: list[dict] | None, results: list[dict] | None, **context) -> dict:
            """Runs after every evaluate finished; publishes the results committed (a failed evaluate
            has none) and names the models that failed or were passed over. The message puts each
            model beside both baselines."""
            from include.db import get_database
            from include.training.records import LEARNED_BASELINE, describe_metrics, latest_result

            planned, results = list(planned or []), list(results or [])
            if not planned:  # nothing to evaluate, or find_unevaluated_models skipped or failed
                raise AirflowSkipException("No model was to be evaluated: nothing to publish.")
            failed = sorted({p["model_id"] for p in planned} - {r["model_id"] for r in results})
            if not results:
                raise AirflowFailException(
                    f"Every evaluation failed ({', '.join(failed)}): nothing to publish; see their evaluate tasks."
                )
            unevaluable = context["ti"].xcom_pull(task_ids="find_unevaluated_models", key="unevaluable") or {}
            snapshot = results[0]["test_snapshot"]
            db = get_database()
            baseline = latest_result(db, "baseline", snapshot)
            learned = latest_result(db, LEARNED_BASELINE, snapshot)
            lines = [f"{r['model_id']}: {describe_metrics(r)}" for r in results]
            message = (
                f"test snapshot {snapshot[:12]}: "
                + "; ".join(lines)
                + f" | baseline{' ' + baseline['model_id'] if baseline else ''}: {describe_metrics(baseline)}"
                + f" | learned baseline{' ' + learned['model_id'] if learned else ''}: {describe_metrics(learned)}"
            )
            if failed:
                message += f" | evaluation failed: {', '.join(failed)} (see their evaluate tasks)"
            if unevaluable:
                message += " | not evaluated: " + "; ".join(f"{m}: {why}" for m, why in sorted(unevaluable.items()))
            log.info("%s", message)
            return {
                "results": [r["result_id"] for r in results],
                "failed": failed,
                "unevaluable": sorted(unevaluable),
                "baseline": baseline,
                "message": message,
            }

        apply_db_migrations() >> found
        publish_results(found, evaluate.output)

    return test_fine_tuned_model()
