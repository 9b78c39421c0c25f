"""What a release holds: the model's save_pretrained folder as it is, plus its label map, metrics,
pictures, model card and deployment record, all written into a staging folder; and the check that
the staged folder serves (:func:`check_release`) before anything points at it."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

from include.config import settings
from include.db import RegistryDatabase
from include.deploy.decision import Decision, PromotionError
from include.deploy.model_card import CONFUSION_FILE, MODEL_CARD, ROC_FILE, model_card
from include.ml import INTERVAL_METRICS, METRIC_NAMES
from include.ml.bundle import DEPLOYMENT_FILE, label_names, missing_files

# What a bundle holds beyond the model's own save_pretrained directory (weights, config.json with
# the label map, the image processor's preprocessor_config.json, mri_model.json).
METRICS_FILE = "metrics.json"
LABELS_FILE = "labels.json"
# The evaluation's pictures a release carries: (file in the release, model_results column).
PICTURES = ((ROC_FILE, "roc_png"), (CONFUSION_FILE, "confusion_png"))
# Side of the synthetic probe image a staged release must classify before it is served.
PROBE_SIDE = 64


def _under(folder: str, path: str, column: str, setting: str) -> Path:
    """``path`` resolved (links followed), if it lies inside ``folder``; else PromotionError naming both.

    The registry's paths are data: a row naming any other folder (by hand, a copied registry, a
    link) must not become part of a release."""
    resolved, root = Path(path).resolve(), Path(folder).resolve()
    if root not in resolved.parents:
        raise PromotionError(
            f"{column} {path!r} is not inside {setting} ({root}); a release takes files from there only. Point "
            f"{setting} at the folder the pipeline wrote it to, or re-run the stage that writes it."
        )
    return resolved


def _read_picture(uri: str | None, column: str, evaluations_dir: str) -> bytes | None:
    """A picture the evaluation wrote (``model_results.<column>``): a file inside MRI_EVALUATIONS_DIR,
    or a URI inside MRI_STORAGE_ROOT; None where there is none."""
    if not uri:
        return None
    if "://" in uri:
        from include.storage import get_storage

        storage = get_storage()
        return storage.read(storage.key(uri))
    path = _under(evaluations_dir, uri, f"model_results.{column}", "MRI_EVALUATIONS_DIR")
    return path.read_bytes() if path.is_file() else None


def _labels(model_dir: Path) -> list[str]:
    config = model_dir / "config.json"
    if not config.is_file():
        raise PromotionError(
            f"{model_dir} has no config.json: models.path must be the model's save_pretrained folder "
            "(include.ml.bundle.save_model writes one)."
        )
    return label_names(json.loads(config.read_text()).get("id2label") or {})


def build_bundle(db: RegistryDatabase, decision: Decision, run_id: str, release: str, staging: Path) -> None:
    """Write the serving bundle of ``decision.model_id`` into ``staging`` (which must not exist yet).

    The model's save_pretrained folder as it is (weights, config with the label map, image
    processor config, mri_model.json), plus the label map on its own, the metrics, the ROC and
    confusion pictures, a model card and the deployment record. The model's folder must be inside
    MRI_MODELS_DIR and the pictures inside MRI_EVALUATIONS_DIR (or the storage).
    """
    cfg = settings()
    [model] = db.fetch_records(*db.statement("release_model.sql", model_id=decision.model_id))
    [result] = db.fetch_records(*db.statement("release_result.sql", result_id=decision.result_id))
    model_dir = _under(cfg.models_dir, model["path"], "models.path", "MRI_MODELS_DIR")
    if not model_dir.is_dir():
        raise PromotionError(
            f"Model {decision.model_id}'s folder {model_dir} (models.path) is missing; restore it, or let "
            "deploy_best_model pick among models whose folders exist."
        )
    links = sorted(str(path) for path in model_dir.rglob("*") if path.is_symlink())
    if links:
        # A link would be followed by the copy and take in whatever it points at.
        raise PromotionError(
            f"Model {decision.model_id}'s folder {model_dir} holds links, which a release does not copy: "
            f"{', '.join(links)}. save_model writes none; re-train the model or restore its folder."
        )
    pictures = {name: _read_picture(result[column], column, cfg.evaluations_dir) for name, column in PICTURES}
    labels = _labels(model_dir)
    shutil.copytree(model_dir, staging)
    evaluation = {
        "result_id": result["result_id"],
        "test_snapshot": result["test_snapshot"],
        "metrics": {name: result[name] for name in (*METRIC_NAMES, "balanced_accuracy", "brier")},
        # 95% bootstrap intervals (NULL in results from before migration 0009).
        "intervals": {
            name: [result[f"{name}_low"], result[f"{name}_high"]]
            for name in INTERVAL_METRICS
            if result[f"{name}_low"] is not None
        },
        "resamples": result["resamples"],
        "confusion_matrix": json.loads(result["confusion_matrix_json"]),
        "evaluated_at": str(result["evaluated_at"]),
        "images": result["images"],
    }
    (staging / LABELS_FILE).write_text(json.dumps({"labels": labels, "id2label": dict(enumerate(labels))}, indent=2))
    (staging / METRICS_FILE).write_text(json.dumps(evaluation, indent=2, default=str))
    for name, data in pictures.items():
        if data:
            (staging / name).write_bytes(data)
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
        "validation_value": decision.validation_value,
        "gain": [decision.gain, decision.gain_low, decision.gain_high] if decision.gain is not None else None,
        "gain_resamples": decision.gain_resamples,
        "test_snapshot": decision.test_snapshot,
        "train_snapshot": model["train_snapshot"],
        "labels": labels,
    }
    card = model_card(
        deployment,
        base_model=model["base_model"],
        hyperparameters=json.loads(model["hyperparameters"]),
        evaluation=evaluation,
        pictures={name: True for name, data in pictures.items() if data},
    )
    (staging / MODEL_CARD).write_text(card)
    (staging / DEPLOYMENT_FILE).write_text(json.dumps(deployment, indent=2))


def probe_image():
    """A small synthetic grey-level image (a gradient with a bright disc), RGB as ``open_image`` gives."""
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:PROBE_SIDE, 0:PROBE_SIDE]
    pixels = (x * 2 + y) % 256
    pixels[(x - PROBE_SIDE / 2) ** 2 + (y - PROBE_SIDE / 2) ** 2 < (PROBE_SIDE / 4) ** 2] = 230
    return Image.fromarray(pixels.astype(np.uint8)).convert("RGB")


def check_release(staging: Path, model_id: str) -> None:
    """Refuse (PromotionError) a staged release that would not serve: every file a bundle needs
    (``include.ml.bundle.missing_files``), a real load (``load_model``: local files, safetensors
    only) and one forward pass on :func:`probe_image` giving one finite probability per label.
    What ``make predict`` does first, done before the switch instead of after it."""
    missing = missing_files(staging)
    if missing:
        raise PromotionError(
            f"The release of {model_id} is incomplete, missing: {', '.join(missing)}. Its models.path folder "
            "must be a whole bundle written by include.ml.bundle.save_model (train_model writes one); "
            "re-train it, or restore the folder, then run deploy_best_model again."
        )
    import numpy as np

    from include.ml.bundle import load_model
    from include.ml.predict import predict_proba

    try:
        loaded = load_model(staging)
    except Exception as err:
        raise PromotionError(
            f"The release of {model_id} cannot be loaded ({' '.join(str(err).split())}); restore or re-train "
            "the model's folder (models.path), then run deploy_best_model again."
        ) from err
    labels = loaded.model.config.num_labels
    try:
        probabilities = predict_proba(loaded.model, loaded.processor, [probe_image()])
    except Exception as err:
        raise PromotionError(
            f"The release of {model_id} loads but fails on a probe image ({' '.join(str(err).split())}); "
            "its image processor or weights do not fit its config. Re-train it, then run deploy_best_model again."
        ) from err
    if probabilities.shape != (1, labels) or not np.all(np.isfinite(probabilities)):
        raise PromotionError(
            f"The release of {model_id} answers a probe image with {probabilities.tolist()} (shape "
            f"{probabilities.shape}), not {labels} finite probabilities; re-train it, then run deploy_best_model again."
        )
