-- Select on validation, confirm on test (issue 20). A sweep's models are ranked by their validation
-- metrics (the fine-tune's kept epoch), so the test snapshot only confirms the one chosen; every
-- result carries 95% bootstrap intervals and the file of its per-image probabilities, so a promotion
-- can ask whether the gain over production is larger than chance. NULL in rows written before 0009.

-- The kept epoch's metrics on the fine-tune's validation holdout (NULL for a baseline: it saw none).
ALTER TABLE models ADD COLUMN IF NOT EXISTS val_loss DOUBLE PRECISION;
ALTER TABLE models ADD COLUMN IF NOT EXISTS val_accuracy DOUBLE PRECISION;
ALTER TABLE models ADD COLUMN IF NOT EXISTS val_precision DOUBLE PRECISION;
ALTER TABLE models ADD COLUMN IF NOT EXISTS val_recall DOUBLE PRECISION;
ALTER TABLE models ADD COLUMN IF NOT EXISTS val_f1 DOUBLE PRECISION;
ALTER TABLE models ADD COLUMN IF NOT EXISTS val_roc_auc DOUBLE PRECISION;

-- Metrics no label order changes, calibration, and how sure the headline numbers are.
ALTER TABLE model_results ADD COLUMN IF NOT EXISTS balanced_accuracy DOUBLE PRECISION;
ALTER TABLE model_results ADD COLUMN IF NOT EXISTS brier DOUBLE PRECISION;            -- mean squared error of the probabilities
ALTER TABLE model_results ADD COLUMN IF NOT EXISTS per_class JSON;                    -- precision, recall, f1, images per label
ALTER TABLE model_results ADD COLUMN IF NOT EXISTS roc_auc_low DOUBLE PRECISION;      -- 95% bootstrap interval
ALTER TABLE model_results ADD COLUMN IF NOT EXISTS roc_auc_high DOUBLE PRECISION;
ALTER TABLE model_results ADD COLUMN IF NOT EXISTS accuracy_low DOUBLE PRECISION;
ALTER TABLE model_results ADD COLUMN IF NOT EXISTS accuracy_high DOUBLE PRECISION;
ALTER TABLE model_results ADD COLUMN IF NOT EXISTS resamples INTEGER;                 -- bootstrap resamples behind the intervals
ALTER TABLE model_results ADD COLUMN IF NOT EXISTS predictions TEXT;                  -- predictions.json: per-image probabilities

-- What a decision chose on and how sure the gain over production was: the candidate's validation
-- value, and the paired-bootstrap gain on the test snapshot with its 95% interval and resample count.
ALTER TABLE promotions ADD COLUMN IF NOT EXISTS candidate_validation_value DOUBLE PRECISION;
ALTER TABLE promotions ADD COLUMN IF NOT EXISTS gain DOUBLE PRECISION;
ALTER TABLE promotions ADD COLUMN IF NOT EXISTS gain_low DOUBLE PRECISION;
ALTER TABLE promotions ADD COLUMN IF NOT EXISTS gain_high DOUBLE PRECISION;
ALTER TABLE promotions ADD COLUMN IF NOT EXISTS gain_resamples INTEGER;
