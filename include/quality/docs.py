"""Run the suites in a Great Expectations file data context and keep readable, offline reports.

The context lives in ``<MRI_QUALITY_DIR>/gx``. Every validation stores its result and renders its
Data Docs page; the site's ``index.html`` is ours, not GX's: GX draws its index table with
JavaScript from CDNs, which an offline browser never loads, so the page would list nothing. Ours
is plain HTML built from ``runs.jsonl`` (one line per gate or report run) and links every run.
A file lock keeps the gate DAGs of both splits and the report from writing the context at once.
"""

from __future__ import annotations

import fcntl
import html
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pandas as pd

from include.files import atomic_write

log = logging.getLogger(__name__)
# GX logs its import and each load of its config at INFO (whole data source dicts): hundreds of
# lines of noise in a task's log. Set before the first GX import, which builds the suites.
logging.getLogger("great_expectations").setLevel(logging.WARNING)

DATASOURCE = "registry"
RUNS_LOG = "runs.jsonl"
# GX's pages load Bootstrap from CDNs; this plug-in style sheet (GX inlines it into every page)
# keeps them readable without a network.
OFFLINE_CSS = """
body { font-family: system-ui, sans-serif; margin: 0 1.5rem; color: #212529; font-size: 15px; }
.navbar { display: flex; align-items: center; border-bottom: 1px solid #dee2e6; margin-bottom: 1rem; }
.navbar-brand img { display: none; } /* fetched from GX's web assets: a broken image offline */
ol.breadcrumb { display: flex; list-style: none; padding: 0; margin: 0; gap: .75rem; }
.row { display: flex; flex-wrap: wrap; }
.col-lg-2 { flex: 0 0 17%; max-width: 17%; } .col-md-10 { flex: 0 0 81%; max-width: 81%; padding-left: 1.5rem; }
.col-12 { width: 100%; } .col-6 { width: 50%; }
ul.nav { list-style: none; padding-left: .5rem; }
.card.mb-3, .collapse { display: none; } /* the result filter and "more info" need Bootstrap's JS */
.card { border: 1px solid #dee2e6; border-radius: .25rem; margin: .5rem 0; padding: .25rem .75rem; }
table { border-collapse: collapse; margin: .25rem 0; }
td, th { border: 1px solid #dee2e6; padding: .25rem .5rem; text-align: left; vertical-align: top; }
.table { width: 100%; }
.alert-secondary { display: block; background: #f1f3f5; padding: .25rem .5rem; border-radius: .25rem; }
.text-danger { color: #b02a37; } .text-success { color: #146c43; }
.fa-check-circle::before { content: "\\2714"; } .fa-times::before { content: "\\2718"; }
"""
INDEX_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #212529; }
h1 { font-size: 1.6rem; margin-bottom: .25rem; } p.meta { color: #6c757d; margin-top: 0; }
table { border-collapse: collapse; width: 100%; font-size: .92rem; }
th { background: #f1f3f5; text-align: left; }
td, th { border: 1px solid #dee2e6; padding: .4rem .6rem; vertical-align: top; overflow-wrap: anywhere; }
th, td.n { white-space: nowrap; } td.run { min-width: 11rem; } td.failed { min-width: 20rem; }
td.ok { color: #146c43; font-weight: 600; } td.bad { color: #b02a37; font-weight: 600; }
code { font-size: .85rem; } ul { margin: 0; padding-left: 1.1rem; }
"""


@dataclass(frozen=True)
class Validated:
    """One frame's validation: the result and the path of its Data Docs page."""

    suite: str
    success: bool
    results: list[Any]
    page: Path


@contextmanager
def locked_context(quality_dir: Path) -> Iterator[Any]:
    """The file data context under ``quality_dir``, held under an exclusive lock."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    quality_dir.mkdir(parents=True, exist_ok=True)
    with open(quality_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        context = gx.get_context(mode="file", project_root_dir=str(quality_dir))
        # GX re-reads this (template-only) file for every config value it resolves, about a second
        # per gate run in YAML parsing; without it, it resolves from the environment alone.
        Path(context.root_directory, "uncommitted", "config_variables.yml").unlink(missing_ok=True)
        if context.variables.progress_bars is None:  # task logs are no place for progress bars
            context.variables.progress_bars = ProgressBarsConfig(globally=False)
            context.variables.save()
        styles = Path(context.root_directory) / "plugins/custom_data_docs/styles/data_docs_custom_styles.css"
        if not styles.exists() or styles.read_text() != OFFLINE_CSS:
            styles.parent.mkdir(parents=True, exist_ok=True)
            styles.write_text(OFFLINE_CSS)
        yield context


def validate_frame(context: Any, suite_name: str, expectations: list[Any], frame: pd.DataFrame, run_id: str) -> Any:
    """Validate ``frame`` against a suite of ``expectations`` (stored as given); return the result
    and its identifier."""
    import great_expectations as gx

    batch = _whole_frame_batch(context, suite_name)
    suite = context.suites.add_or_update(gx.ExpectationSuite(name=suite_name, expectations=expectations))
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=suite_name, data=batch, suite=suite)
    )
    # Row-level failures name the content hashes of the rows, not only their values.
    index_columns = ["content_hash"] if "content_hash" in frame.columns else []
    checkpoint = gx.Checkpoint(
        name=suite_name,
        validation_definitions=[definition],
        actions=[],
        result_format={"result_format": "SUMMARY", "unexpected_index_column_names": index_columns},
    )
    checkpoint = context.checkpoints.add_or_update(checkpoint)
    outcome = checkpoint.run(batch_parameters={"dataframe": frame}, run_id=gx.RunIdentifier(run_name=run_id))
    [(identifier, result)] = outcome.run_results.items()
    return identifier, result


def _whole_frame_batch(context: Any, asset_name: str) -> Any:
    """The batch definition "whole DataFrame" of asset ``asset_name``, created on first use."""
    try:
        source = context.data_sources.get(DATASOURCE)
    except LookupError:
        source = context.data_sources.add_pandas(DATASOURCE)
    try:
        asset = source.get_asset(asset_name)
    except LookupError:
        asset = source.add_dataframe_asset(asset_name)
    try:
        return asset.get_batch_definition("whole")
    except LookupError:  # KeyError, in GX 1.24
        return asset.add_batch_definition_whole_dataframe("whole")


def build_pages(context: Any, identifiers: list[Any]) -> list[Path]:
    """Render the Data Docs pages of these validation results (and of their suites), not the index."""
    resources = [*identifiers, *{i.expectation_suite_identifier for i in identifiers}]
    context.build_data_docs(resource_identifiers=resources, build_index=False)
    pages = []
    for identifier in identifiers:
        [site] = context.get_docs_sites_urls(resource_identifier=identifier, only_if_exists=False)
        pages.append(Path(unquote(urlparse(site["site_url"]).path)))
    return pages


def site_dir(context: Any) -> Path:
    """The folder of the local Data Docs site (where ``index.html`` is)."""
    [site] = context.get_docs_sites_urls(only_if_exists=False)
    return Path(unquote(urlparse(site["site_url"]).path)).parent


def record_and_index(quality_dir: Path, site: Path, entry: dict) -> Path:
    """Append ``entry`` to the runs log and rewrite the index page from it; return the page."""
    with open(quality_dir / RUNS_LOG, "a") as runs:
        runs.write(json.dumps(entry, default=str) + "\n")
    entries = [json.loads(line) for line in (quality_dir / RUNS_LOG).read_text().splitlines() if line.strip()]
    index = site / "index.html"
    atomic_write(index, index_html(entries, site))
    return index


def index_html(entries: list[dict], site: Path) -> str:
    """The runs, newest first: when, what, which snapshot, the verdict, failures, the pages."""
    rows = []
    for entry in sorted(entries, key=lambda e: e["at"], reverse=True):
        verdict = "passed" if entry["success"] else "failed"
        failed = "".join(f"<li>{html.escape(_shorten(text))}</li>" for text in entry["failed"]) or "none"
        links = "<br>".join(
            f'<a href="{html.escape(os.path.relpath(page, site))}">{html.escape(name)}</a>'
            for name, page in entry["pages"].items()
        )
        rows.append(
            "<tr>"
            f'<td class="n">{html.escape(entry["at"][:19].replace("T", " "))}</td>'
            f'<td class="n">{html.escape(entry["kind"])}</td>'
            f'<td class="run"><code>{html.escape(entry["run_id"])}</code></td>'
            f'<td class="n">{html.escape(entry["split"])}</td>'
            f'<td class="n"><code>{html.escape(entry["snapshot"][:12])}</code></td>'
            f'<td class="n">{entry["images"]}</td>'
            f'<td class="n {"ok" if entry["success"] else "bad"}">{verdict}</td>'
            f'<td class="failed"><ul>{failed}</ul></td>'
            f'<td class="n">{links}</td>'
            "</tr>"
        )
    header = "".join(
        f"<th>{name}</th>"
        for name in ("UTC", "kind", "run", "split", "snapshot", "images", "result", "failed expectations", "pages")
    )
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>MRI data quality</title>'
        f"<style>{INDEX_CSS}</style></head><body><h1>MRI data quality: every gate and report run</h1>"
        f'<p class="meta">{len(entries)} runs. A gate run that passed froze its snapshot for training '
        "(train) or evaluation (test); reports gate nothing. Each page is a Great Expectations "
        "validation result.</p>"
        f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table></body></html>"
    )


def _shorten(text: str, limit: int = 260) -> str:
    """A failure as the index shows it; the run's page and quality_runs keep it whole."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
