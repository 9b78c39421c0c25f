"""
### Train model

Runs when `quality_gate_train` passed (Dataset `mri://quality/passed/train`). Fine-tunes the base
model (`MRI_MODEL_SOURCE`: a named ResNet config by default, a local checkpoint, or `production`,
the promoted bundle) on exactly the train snapshot the gate validated, once per entry of the
`sweep` param (default `MRI_TRAIN_SWEEP`): each entry is its own mapped `fine_tune` task
(`FineTuneImageClassifierOperator`), its own bundle under `MRI_MODELS_DIR` and its own `models`
row. Fine-tunes run in pool `MRI_TRAINING_POOL` (1 slot by default) on queue `MRI_TRAINING_QUEUE`.
Emits `mri://registry/models/trained` once every model is saved and recorded.

The Airflow DAG is built by a factory in `include/training/dags.py`.
"""

from include.training.dags import build_train_model_dag

build_train_model_dag(doc_md=__doc__)
