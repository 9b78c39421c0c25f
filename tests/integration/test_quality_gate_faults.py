"""The gate's expectations that tests/integration/test_quality_gate.py does not fail yet: image size,
PIL mode, missing shape values and the quarantine rate, each failing the real gate on DuckDB and
PostgreSQL; and `make dq-report` exiting 1 when an expectation fails."""

import os
import subprocess
import sys

import pytest
from airflow.utils.state import DagRunState, TaskInstanceState

from include.config import PROJECT_ROOT
from include.registry.records import write_records

# gate_env is a fixture: imported so pytest finds it here, then named by each test (F401, F811).
from tests.integration.test_quality_gate import (  # noqa: F401
    failed_columns,
    gate_env,
    gate_events,
    record,
    run_gate_dag,
)

# fault -> (the rows it adds to the clean train split, the columns whose expectations must fail).
# The thresholds are the defaults: sides in [64, 2048] pixels, modes L LA RGB RGBA I I;16, at most 10%
# of a split's rows quarantined. One image more keeps the classes as balanced as the gate wants.
FAULTS = {
    "narrower_than_the_minimum_side": ([record(40, "glioma")._replace(width=32)], {"width"}),
    "taller_than_the_maximum_side": ([record(41, "glioma")._replace(height=4096)], {"height"}),
    "a_mode_not_accepted": ([record(42, "glioma", mode="CMYK")], {"mode"}),
    "no_width_height_or_mode": (
        [record(43, "glioma")._replace(width=None, height=None, mode=None)],
        {"width", "height", "mode"},
    ),
    # 1 of 7 rows: 14% > 10%.
    "too_many_quarantined": (
        [record(44, "glioma")._replace(status="quarantined", reason="not an image: no JPEG or PNG header")],
        {"quarantine_rate"},
    ),
}


@pytest.mark.parametrize("fault", list(FAULTS), ids=list(FAULTS))
def test_each_fault_fails_the_gate_and_emits_nothing(gate_env, fault):  # noqa: F811
    db, _ = gate_env
    rows, columns = FAULTS[fault]
    write_records(db, rows, "r2")

    run, ti = run_gate_dag()

    assert run.state == DagRunState.FAILED and ti.state == TaskInstanceState.FAILED
    assert columns <= failed_columns(db, run)
    assert gate_events(run) == 0


@pytest.mark.parametrize("db_conn_id", ["duckdb"], indirect=True)
def test_dq_report_exits_1_when_an_expectation_fails_and_0_when_none_does(gate_env):  # noqa: F811
    db, _ = gate_env

    def dq_report() -> subprocess.CompletedProcess:
        """What `make dq-report` runs, in this test's environment."""
        return subprocess.run(
            [sys.executable, "-m", "include.quality", "report"],
            cwd=PROJECT_ROOT,
            env=os.environ.copy(),
            capture_output=True,
            text=True,
        )

    clean = dq_report()
    write_records(db, FAULTS["a_mode_not_accepted"][0], "r2")
    failing = dq_report()

    assert clean.returncode == 0, clean.stderr[-2000:]
    assert failing.returncode == 1, failing.stderr[-2000:]
