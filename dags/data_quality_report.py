"""
### Data quality report

By hand (or `make dq-report` outside Airflow): validates both splits now with the quality gate's
suites on the backend of `MRI_DB_CONN_ID`, writes their Great Expectations Data Docs pages and
adds them to the index page under `MRI_QUALITY_DIR` (the task's log and XCom give its path).
It gates nothing: no snapshot is frozen, no `quality_runs` row is written, no Dataset is emitted,
and the run succeeds whatever the data's verdict.
"""

from include.quality.dag import build_quality_report_dag

build_quality_report_dag(doc_md=__doc__)
