"""The metric names live in include.ml; the SQL that has to spell them out must agree with that list."""

import re

from include.config import MIGRATIONS_DIR, SQL_DIR
from include.ml import METRIC_NAMES, SELECTION_METRICS


def test_the_pick_sql_ranks_by_exactly_the_selection_metrics():
    sql = (SQL_DIR / "pick_best_model.sql").read_text()
    assert set(re.findall(r"WHEN '(\w+)' THEN l\.(\w+)", sql)) == {(name, name) for name in SELECTION_METRICS}


def test_selection_metrics_are_the_evaluation_metrics_where_higher_is_better():
    assert set(SELECTION_METRICS) == set(METRIC_NAMES) - {"loss"}


def test_model_results_has_a_column_for_every_metric():
    ddl = "\n".join(p.read_text() for p in sorted(MIGRATIONS_DIR.glob("*.sql")))
    table = re.search(r"CREATE TABLE IF NOT EXISTS model_results \((.*?)\n\)", ddl, re.S).group(1)
    columns = {line.split()[0] for line in table.splitlines() if line.strip()}
    assert set(METRIC_NAMES) <= columns
