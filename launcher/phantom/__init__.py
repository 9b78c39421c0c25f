"""Phantom brain-MRI slices: T2-like axial MNI152 slices with a painted glioma or meningioma,
several slices per subject (each subject its own head, scanner session and tumour brightness).

A stand-in for the public Kaggle brain-tumour images where those cannot be downloaded: same file
names and layout plus a ``labels.csv`` naming each file's subject, deterministic by seed, drawn
from the MNI152 template shipped inside nilearn.
``python -m launcher.phantom --help`` writes a dataset from the command line.
"""

from launcher.phantom.generate import PhantomConfig, generate_dataset

__all__ = ["PhantomConfig", "generate_dataset"]
