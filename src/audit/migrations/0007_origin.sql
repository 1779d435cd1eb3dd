-- Where an event was first recorded, when it was copied in from another log (`steward audit push`):
-- `<source log> <source run> <source seq> <source hash>`. Empty for events recorded here; covered by the chain
-- when set, so older rows keep their hashes.
ALTER TABLE events ADD COLUMN origin TEXT NOT NULL DEFAULT '';
