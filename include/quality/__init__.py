"""The quality gate between the registry and training: Great Expectations on a named snapshot.

Three steps, one module each, none importing Great Expectations at import time (DAG files import
this package while the scheduler parses them):

- :mod:`include.quality.frames` reads one split from the registry, through the backend layer, as
  two DataFrames: the snapshot's rows (one per image) and one row of split-level measures
  (class counts and balance, quarantine rate, leakage and label conflicts by pixels,
  near-duplicates across splits by perceptual hash: :mod:`include.quality.near_duplicates`).
- :mod:`include.quality.suites` turns the thresholds of ``include.config`` into expectations.
- :mod:`include.quality.docs` runs them in a file data context under ``MRI_QUALITY_DIR`` and
  writes the Data Docs pages plus an index page that links every run and works offline.

:mod:`include.quality.gate` ties them together: the gate validates, freezes the snapshot it passed
and records the run in ``quality_runs``, all in one transaction; the on-demand report validates both
splits and records nothing, so it never gates anything.
"""

from include.quality.gate import GateOutcome, QualityGateFailed, run_gate, run_report

__all__ = ["GateOutcome", "QualityGateFailed", "run_gate", "run_report"]
