"""The bundle's model card (README.md), written by ``huggingface_hub.ModelCard`` from a template.

The YAML header is ``ModelCardData`` with ``eval_results`` (the Hub's ``model-index``), so the
metrics on the gated test snapshot are machine-readable as well as shown in the body.
"""

from __future__ import annotations

import json

MODEL_CARD = "README.md"  # HuggingFace's name for a model card
ROC_FILE = "roc.png"
CONFUSION_FILE = "confusion.png"

TEMPLATE = """---
{{ card_data }}
---

# {{ d.model_id }}

Brain MRI slice classifier ({{ d.labels | join(", ") }}), promoted to production by `deploy_best_model` \
at {{ d.promoted_at }} (run `{{ d.run_id }}`, release `{{ d.release }}`).

Chosen within its sweep by validation **{{ d.metric }}**\
{% if d.validation_value is not none %} = {{ "%.4f" | format(d.validation_value) }}{% endif %}; \
{{ d.metric }} = {{ "%.4f" | format(d.value) }} on the gated test snapshot; \
{% if d.previous_model_id and d.previous_value is not none -%}
it replaced `{{ d.previous_model_id }}` ({{ "%.4f" | format(d.previous_value) }} on the same snapshot\
{% if d.gain %}: gain {{ "%+.4f" | format(d.gain[0]) }}, 95% interval \
[{{ "%+.4f" | format(d.gain[1]) }}, {{ "%+.4f" | format(d.gain[2]) }}] from {{ d.gain_resamples }} paired \
resamples{% endif %}; margin {{ d.margin }}).
{%- else -%}
it is the first production model.
{%- endif %}

## Data

| | snapshot |
|---|---|
| train | `{{ d.train_snapshot }}` |
| test | `{{ d.test_snapshot }}` ({{ evaluation.images or "?" }} images) |

## Model

Base model `{{ base_model }}`; labels (index order) \
{% for label in d.labels %}{{ loop.index0 }} `{{ label }}`{{ ", " if not loop.last }}{% endfor %}.

Hyperparameters:

```json
{{ hyperparameters }}
```

## Metrics on the test snapshot

| metric | value | 95% interval |
|---|---:|---|
{% for name, value in evaluation.metrics.items() -%}
| {{ name }} | {{ "-" if value is none else "%.4f" | format(value) }} | \
{% if name in evaluation.intervals %}{{ "%.4f" | format(evaluation.intervals[name][0]) }} to \
{{ "%.4f" | format(evaluation.intervals[name][1]) }}{% endif %} |
{% endfor %}
{%- if evaluation.resamples %}
Intervals: percentile bootstrap, {{ evaluation.resamples }} resamples within class.
{% endif %}
Confusion matrix (rows: true label, columns: predicted):

| | {{ d.labels | join(" | ") }} |
{{ "|---" * (d.labels | length + 1) }}|
{% for label, row in confusion -%}
| {{ label }} | {{ row | join(" | ") }} |
{% endfor %}
{%- if roc %}

## ROC curve

![ROC curve]({{ roc }})
{% endif %}
{%- if confusion_png %}

![Confusion matrix]({{ confusion_png }})
{%- endif %}

## Use

`make predict IMAGES="a.jpg b.png"` prints class probabilities; \
`include.ml.bundle.load_model(<this folder>)` loads it in Python.
"""


def model_card(
    deployment: dict, base_model: str, hyperparameters: dict, evaluation: dict, pictures: dict[str, bool]
) -> str:
    """The bundle's README.md: what the model is, what it was trained and tested on, how well it did.

    :param deployment: the release's deployment record (``deployment.json``).
    :param evaluation: the result it was promoted on: ``metrics``, ``confusion_matrix``, ``images``.
    :param pictures: which of ROC_FILE and CONFUSION_FILE the bundle holds.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    dataset = f"gated test snapshot {deployment['test_snapshot'][:12]}"
    card_data = ModelCardData(
        model_name=deployment["model_id"],
        library_name="transformers",
        pipeline_tag="image-classification",
        tags=["mri", "airflow", *deployment["labels"]],
        eval_results=[
            EvalResult(
                task_type="image-classification",
                dataset_type="mri-slices",
                dataset_name=dataset,
                dataset_split="test",
                metric_type=name,
                metric_value=value,
            )
            for name, value in evaluation["metrics"].items()
            if value is not None
        ],
    )
    card = ModelCard.from_template(
        card_data,
        template_str=TEMPLATE,
        d=deployment,
        base_model=base_model,
        hyperparameters=json.dumps(hyperparameters, indent=2, sort_keys=True),
        evaluation=evaluation,
        confusion=list(zip(deployment["labels"], evaluation["confusion_matrix"], strict=False)),
        roc=ROC_FILE if pictures.get(ROC_FILE) else None,
        confusion_png=CONFUSION_FILE if pictures.get(CONFUSION_FILE) else None,
    )
    return str(card)
