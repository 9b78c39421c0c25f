-- What a promotion decision compared the candidate with besides production: the untrained
-- baseline's result on the same test snapshot, and the gain over it that was required
-- (MRI_MIN_GAIN_OVER_BASELINE at the time). NULL in rows decided before 0007, and where the
-- baseline had no result on the snapshot (then nothing was promoted).
ALTER TABLE promotions ADD COLUMN IF NOT EXISTS baseline_model_id TEXT;
ALTER TABLE promotions ADD COLUMN IF NOT EXISTS baseline_value DOUBLE PRECISION;
ALTER TABLE promotions ADD COLUMN IF NOT EXISTS min_gain_over_baseline DOUBLE PRECISION;
