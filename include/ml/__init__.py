"""The ML core: pure torch and transformers, no Airflow (a test imports it in a fresh interpreter and
checks ``sys.modules``), so it runs the same from a task, a notebook, a benchmark or a test.

- ``architectures``: the named ResNet configs (plain dicts, importable without torch).
- ``source``: the base model from ``MRI_MODEL_SOURCE`` (a config, a folder, the production bundle, a hub id).
- ``hyperparameters``: the frozen ``TrainConfig``, checked when built from JSON.
- ``data``: images as tensors (processed once), light augmentation, seeded batches.
- ``train``: the fine-tuning loop, ``train_and_save`` (what the fine-tune operator calls), ``build_baseline``.
- ``learned_baseline``: a logistic regression on 32 px grey levels (scikit-learn), the floor a promotion must clear.
- ``metrics``: loss, accuracy, precision, recall, F1, ROC AUC, balanced accuracy, Brier on probabilities, the pictures.
- ``bootstrap``: 95% intervals of a metric, and the paired gain of one model over another on the same images.
- ``evaluate``: a model on a set of images, through ``predict``; ``evaluate_bundle`` (what the evaluate operator calls).
- ``predict``: ``open_image`` and ``predict_proba``, what evaluation and serving both call.
- ``bundle``: ``save_model`` / ``load_model`` (save_pretrained layout plus ``mri_model.json``).

torch and transformers are imported inside functions where a module is also imported by DAG code,
so parsing a DAG never loads them.
"""

# The one list of an evaluation's metrics (``metrics.classification_metrics`` computes them), in
# the order of their model_results columns; the registry, the bundle and the pick all follow it.
METRIC_NAMES = ("loss", "accuracy", "precision", "recall", "f1", "roc_auc")
# The ones a model can be selected by (higher is better: all but the loss), in the order messages list them.
SELECTION_METRICS = ("roc_auc", "f1", "accuracy", "precision", "recall")
# The metrics every evaluation gives a 95% bootstrap interval for (model_results.<name>_low, _high).
INTERVAL_METRICS = ("roc_auc", "accuracy")
