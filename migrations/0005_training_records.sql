-- What training and evaluation record beyond 0001: which role a model plays, which run made it,
-- and where each evaluation's pictures are. 0004 is the ingestion hardening's.

-- 'baseline' (the base model with an untrained head: the reference) or 'fine_tuned'.
ALTER TABLE models ADD COLUMN IF NOT EXISTS role TEXT;
ALTER TABLE models ADD COLUMN IF NOT EXISTS run_id TEXT;
ALTER TABLE model_results ADD COLUMN IF NOT EXISTS run_id TEXT;
ALTER TABLE model_results ADD COLUMN IF NOT EXISTS images INTEGER;       -- test images evaluated
ALTER TABLE model_results ADD COLUMN IF NOT EXISTS roc_png TEXT;         -- ROC curve picture
ALTER TABLE model_results ADD COLUMN IF NOT EXISTS confusion_png TEXT;   -- confusion matrix picture
CREATE INDEX IF NOT EXISTS model_results_snapshot ON model_results (test_snapshot);
