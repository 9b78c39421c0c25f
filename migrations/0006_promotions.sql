-- Every promotion decision of deploy_best_model, promoted or not, with why: the audit trail of
-- which model served when, and the numbers it was chosen on. One row per DAG run (run_id), so a
-- retried task adds nothing twice. No foreign key to models: DuckDB refuses updates of rows a
-- foreign key points at, and promotion updates models.stage.
CREATE TABLE IF NOT EXISTS promotions (
    run_id               TEXT PRIMARY KEY,               -- the deploy_best_model run that decided
    promoted             BOOLEAN NOT NULL,
    reason               TEXT NOT NULL,                  -- why (promoted, or why not), as logged
    metric               TEXT NOT NULL,                  -- MRI_SELECTION_METRIC at the time
    margin               DOUBLE PRECISION NOT NULL,      -- MRI_PROMOTION_MARGIN at the time
    test_snapshot        TEXT,                           -- NULL when no gated test snapshot had results
    candidate_model_id   TEXT,                           -- the pick's winner; NULL when there was none
    candidate_result_id  TEXT,
    candidate_value      DOUBLE PRECISION,
    previous_model_id    TEXT,                           -- production before the decision
    previous_value       DOUBLE PRECISION,               -- its metric on the same snapshot
    release              TEXT,                           -- bundle published (NULL when not promoted)
    decided_at           TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT current_timestamp
);
CREATE INDEX IF NOT EXISTS promotions_decided_at ON promotions (decided_at);
