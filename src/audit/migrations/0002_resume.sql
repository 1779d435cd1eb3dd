-- A resumed run names the run it continues, so the chain of a job can be followed back.
ALTER TABLE runs ADD COLUMN resumed_from INTEGER;
