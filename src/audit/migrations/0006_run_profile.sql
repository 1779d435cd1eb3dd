-- The profile `connect()` opened by default in a run (from --profile, STEWARD_PROFILE or default_profile), so a
-- resume can refuse to continue a job on another profile. Covered by the run digest when set; older runs: NULL.
ALTER TABLE runs ADD COLUMN default_profile TEXT;
