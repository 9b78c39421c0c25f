"""The Airflow Datasets that chain the DAGs, defined once (see docs/architecture.md for the flow).

Logical URIs rather than storage paths, so moving the storage or the database keeps the chain.
"""

from __future__ import annotations

from include.wiring.compat import Dataset

SPLITS = ("train", "test")

# Landing -> raw: files moved and ready to register.
RAW = {split: Dataset(f"mri://storage/raw/{split}") for split in SPLITS}
# Rows committed to the `images` table.
IMAGES = {split: Dataset(f"mri://registry/images/{split}") for split in SPLITS}
# A gate run passed on a snapshot of the split: training (train) and evaluation (test) may use it.
GATE_PASSED = {split: Dataset(f"mri://quality/passed/{split}") for split in SPLITS}
MODEL_TRAINED = Dataset("mri://registry/models/trained")
MODEL_EVALUATED = Dataset("mri://registry/model_results")
MODEL_DEPLOYED = Dataset("mri://registry/models/production")
