-- The registry tables of docs/architecture.md. Plain DDL that DuckDB and PostgreSQL both accept:
-- no SERIAL (DuckDB has none; keys are content hashes and ids chosen by the code), DOUBLE PRECISION
-- rather than REAL, JSON for free-form statistics and hyperparameters.

CREATE TABLE IF NOT EXISTS images (
    content_hash       TEXT PRIMARY KEY,               -- SHA-256 of the file bytes, hex
    uri                TEXT NOT NULL,                  -- where the file lives in storage
    split              TEXT NOT NULL CHECK (split IN ('train', 'test')),
    label              TEXT,                           -- NULL only for quarantined files
    width              INTEGER,
    height             INTEGER,
    mode               TEXT,                           -- PIL mode: L, RGB, ...
    bytes              BIGINT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('registered', 'quarantined')),
    reason             TEXT,                           -- why a file is quarantined
    first_seen_run_id  TEXT NOT NULL,
    created_at         TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT current_timestamp,
    updated_at         TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT current_timestamp,
    CHECK (status = 'registered' OR reason IS NOT NULL)
);
CREATE INDEX IF NOT EXISTS images_split_status ON images (split, status);

CREATE TABLE IF NOT EXISTS quality_runs (
    suite        TEXT NOT NULL,
    split        TEXT NOT NULL,
    run_id       TEXT NOT NULL,
    success      BOOLEAN NOT NULL,
    statistics   JSON,
    report_path  TEXT,
    created_at   TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (suite, split, run_id)
);

CREATE TABLE IF NOT EXISTS models (
    model_id         TEXT PRIMARY KEY,
    base_model       TEXT NOT NULL,
    hyperparameters  JSON NOT NULL,
    train_snapshot   TEXT NOT NULL,                    -- hash of the sorted image keys trained on
    path             TEXT NOT NULL,
    stage            TEXT NOT NULL DEFAULT 'candidate' CHECK (stage IN ('candidate', 'production', 'archived')),
    created_at       TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT current_timestamp
);

-- Append-only: every evaluation is a new row, history is never overwritten.
CREATE TABLE IF NOT EXISTS model_results (
    result_id         TEXT PRIMARY KEY,                -- chosen by the evaluating task (uuid)
    model_id          TEXT NOT NULL,
    test_snapshot     TEXT NOT NULL,                   -- hash of the sorted test image keys
    loss              DOUBLE PRECISION,
    accuracy          DOUBLE PRECISION NOT NULL,
    precision         DOUBLE PRECISION,
    recall            DOUBLE PRECISION,
    f1                DOUBLE PRECISION,
    roc_auc           DOUBLE PRECISION,
    confusion_matrix  JSON NOT NULL,                   -- rows: true label, columns: predicted, label order of MRI_LABELS
    evaluated_at      TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT current_timestamp
);
CREATE INDEX IF NOT EXISTS model_results_model ON model_results (model_id);
