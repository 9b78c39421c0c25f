/* One quality-gate run's quality_runs row: its verdict, every observed value (statistics, JSON text),
   its Data Docs page and the snapshot it validated (record_gate_run, include/quality/gate.py, in the
   gate's transaction, after deleting the row a cleared and re-run task wrote before). Returns no rows;
   the values are bound. */
INSERT INTO quality_runs (suite, split, run_id, success, statistics, report_path, snapshot)
VALUES ({{ suite }}, {{ split }}, {{ run_id }}, {{ success }}, {{ statistics }}, {{ report_path }}, {{ snapshot }})
