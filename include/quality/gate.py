"""Gate runs and report runs: validate a split's snapshot, keep the pages, record the verdict.

The gate keeps three promises:

- it freezes exactly the rows it validated: they are read, validated and frozen in one transaction
  (``stage_members``, ``freeze_staged``), and rows written meanwhile wait for the next gate run;
- only a passing run freezes its snapshot's members, all of them together with its ``quality_runs``
  row, so training and evaluation (``passed_snapshot``) read only data a gate passed;
- every gate run, passed or failed, is a ``quality_runs`` row with the observed value of every
  expectation, and a failure names each failed expectation with its observed value.

A report run validates the same way, writes its pages, and records nothing in the registry.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pendulum

from include.config import Settings, settings
from include.db import RegistryDatabase
from include.db.queries import bound, sql_file
from include.quality import docs, suites
from include.quality.frames import SplitFrames, read_split
from include.registry.snapshots import freeze_staged
from include.wiring.datasets import SPLITS

log = logging.getLogger(__name__)

# The `suite` of a gate's quality_runs row: the images_<split> and split_<split> suites together.
GATE_SUITE = "registry_gate"
# Measure columns that carry the example of what a failed measure counts.
EXAMPLE_OF = {
    "smallest_class_images": "smallest_class",
    "leaked_contents": "leak_example",
    "label_conflicts": "conflict_example",
    "near_duplicates": "near_duplicate_example",
    "leaked_subjects": "leaked_subject_example",
}


class QualityGateFailed(Exception):
    """A gate run failed an expectation; the message names each one with its observed value."""


@dataclass(frozen=True)
class GateOutcome:
    """What one validation of a split found.

    :param expectations: one dict per expectation: suite, expectation, column, description,
        success, observed (the observed value, or the unexpected rows of a row-level expectation).
    :param pages: the Data Docs page of each suite's result.
    """

    kind: str
    split: str
    run_id: str
    snapshot_id: str
    images: int
    class_counts: dict[str, int]
    measures: dict[str, Any]
    expectations: list[dict] = field(default_factory=list)
    pages: dict[str, str] = field(default_factory=dict)
    index: str = ""

    @property
    def success(self) -> bool:
        return all(e["success"] for e in self.expectations)

    def failures(self) -> list[str]:
        """Each failed expectation, named, with what was observed."""
        return [
            f"{e['expectation']}({e['column']}) [{e['description']}]: observed {describe(e['observed'])}"
            for e in self.expectations
            if not e["success"]
        ]

    def message(self) -> str:
        failures = self.failures()
        head = f"Quality {self.kind} of split {self.split!r}, snapshot {self.snapshot_id[:12]} ({self.images} images): "
        if not failures:
            return head + f"all {len(self.expectations)} expectations passed. Report: {self.index}"
        return (
            head
            + f"{len(failures)} of {len(self.expectations)} expectations failed: "
            + "; ".join(failures)
            + ". Fix the data (`make retract URI=...` takes back a misplaced upload) or the MRI_QUALITY_* threshold "
            + f"named, and let the gate run again. Report: {self.index}"
        )

    def statistics(self) -> dict:
        """The ``quality_runs.statistics`` JSON: every observed value, the counts, the pages."""
        return {
            "snapshot": self.snapshot_id,
            "images": self.images,
            "classes": self.class_counts,
            "measures": self.measures,
            "expectations": self.expectations,
            "pages": self.pages,
            "index": self.index,
        }

    def summary(self) -> dict:
        """A small dict for XCom and logs."""
        return {
            "split": self.split,
            "snapshot": self.snapshot_id,
            "images": self.images,
            "success": self.success,
            "failed": self.failures(),
            "report": self.pages.get("images", ""),
            "index": self.index,
        }


def describe(observed: Any) -> str:
    """An observed value in words: a number, a number with its details, or 'n of m rows (p%), e.g. [...]'."""
    if isinstance(observed, dict) and "unexpected" in observed:
        return (
            f"{observed['unexpected']} of {observed['rows']} rows ({observed['percent']}%), "
            f"e.g. {observed['examples'][:3]}"
        )
    if isinstance(observed, dict) and "value" in observed:
        # Details in plain text, not a dict's repr: the retract command in them must paste as printed.
        details = "; ".join(f"{key}: {value}" for key, value in observed.items() if key != "value")
        return f"{observed['value']!r}" + (f" ({details})" if details else "")
    return repr(observed)


def run_gate(db: RegistryDatabase, split: str, run_id: str, cfg: Settings | None = None) -> GateOutcome:
    """Validate the current snapshot of ``split``; on success freeze it; record the run.

    :param db: the registry database.
    :param split: ``train`` or ``test``.
    :param run_id: the Airflow run id (the GX run name and the ``quality_runs`` key).
    :raises QualityGateFailed: naming each failed expectation with its observed value.
    """
    cfg = cfg or settings()
    p = db.placeholder
    with db.transaction() as cursor:
        frames = read_split(cursor, p, split, cfg)
        outcome = validate(frames, run_id, "gate", cfg)
        if outcome.success:
            freeze_staged(cursor, p, frames.snapshot_id)
        record_gate_run(cursor, p, outcome)
    log.info("%s", outcome.message())
    if not outcome.success:
        raise QualityGateFailed(outcome.message())
    return outcome


def run_report(db: RegistryDatabase, run_id: str, cfg: Settings | None = None) -> dict[str, GateOutcome]:
    """Validate every split now and write their pages; gates nothing, records nothing in the registry.

    :param db: the registry database.
    :param run_id: names the run in the Data Docs.
    """
    cfg = cfg or settings()
    outcomes = {}
    for split in SPLITS:
        with db.transaction() as cursor:
            frames = read_split(cursor, db.placeholder, split, cfg)
        outcomes[split] = validate(frames, run_id, "report", cfg)
    for outcome in outcomes.values():
        log.info("%s", outcome.message())
    return outcomes


def validate(frames: SplitFrames, run_id: str, kind: str, cfg: Settings) -> GateOutcome:
    """Run both suites of the split on its frames, render their pages, add the run to the index."""
    names = suites.suite_names(frames.split)
    plan = [
        (names["images"], suites.image_expectations(cfg), frames.images),
        (names["measures"], suites.measure_expectations(cfg), frames.measures),
    ]
    measures = _plain(frames.measures.iloc[0].to_dict())
    quality_dir = Path(cfg.quality_dir)
    with docs.locked_context(quality_dir) as context:
        identifiers, expectations = [], []
        for suite_name, expected, frame in plan:
            identifier, result = docs.validate_frame(context, suite_name, expected, frame, run_id)
            identifiers.append(identifier)
            expectations += [_expectation(suite_name, r, measures) for r in result.results]
        pages = docs.build_pages(context, identifiers)
        outcome = GateOutcome(
            kind=kind,
            split=frames.split,
            run_id=run_id,
            snapshot_id=frames.snapshot_id,
            images=len(frames.images),
            class_counts=frames.class_counts,
            measures=measures,
            expectations=expectations,
            pages={"images": str(pages[0]), "measures": str(pages[1])},
        )
        entry = {
            "at": pendulum.now("UTC").isoformat(),
            "kind": kind,
            "run_id": run_id,
            "split": frames.split,
            "snapshot": frames.snapshot_id,
            "images": outcome.images,
            "success": outcome.success,
            "failed": outcome.failures(),
            "pages": outcome.pages,
        }
        index = docs.record_and_index(quality_dir, docs.site_dir(context), entry)
    return replace(outcome, index=str(index))


def record_gate_run(cursor: Any, p: str, outcome: GateOutcome) -> None:
    """Write the run's ``quality_runs`` row; a cleared and re-run task replaces its own row."""
    key = {"suite": GATE_SUITE, "split": outcome.split, "run_id": outcome.run_id}
    cursor.execute(f"DELETE FROM quality_runs WHERE suite = {p} AND split = {p} AND run_id = {p}", tuple(key.values()))
    row = key | {
        "success": outcome.success,
        "statistics": json.dumps(outcome.statistics()),
        "report_path": outcome.pages["images"],
        "snapshot": outcome.snapshot_id,
    }
    cursor.execute(*bound(sql_file("insert_quality_run.sql"), row, p))


def _expectation(suite_name: str, result: Any, measures: dict) -> dict:
    """One expectation's verdict and observed value, as plain JSON."""
    config = result.expectation_config
    column = config.kwargs.get("column", "table")
    found = result.result or {}
    if "observed_value" in found:
        observed = found["observed_value"]
        if column in EXAMPLE_OF and measures.get(EXAMPLE_OF[column]) is not None:
            observed = {"value": observed, EXAMPLE_OF[column]: measures[EXAMPLE_OF[column]]}
    else:
        observed = {
            "unexpected": found.get("unexpected_count", 0),
            "rows": found.get("element_count", 0),
            "percent": round(found.get("unexpected_percent") or 0.0, 3),
            "examples": (found.get("partial_unexpected_index_list") or found.get("partial_unexpected_list") or [])[:5],
        }
    thresholds = {k: v for k, v in config.kwargs.items() if k in ("min_value", "max_value", "value_set", "column_set")}
    return _plain(
        {
            "suite": suite_name,
            "expectation": config.type,
            "column": column,
            "description": config.description,
            "thresholds": thresholds,
            "success": bool(result.success),
            "observed": observed,
        }
    )


def _plain(value: Any) -> Any:
    """JSON-safe copy: numpy scalars become Python numbers, NaN and infinities (a missing width read
    into a number column) None, as PostgreSQL's JSON has no such numbers; anything else odd becomes text."""
    text = json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o))
    return json.loads(text, parse_constant=lambda _: None)
