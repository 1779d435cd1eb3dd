-- Where an event was first recorded, when `steward audit push` copied it in from a SQLite log:
-- `<source log> <source run> <source seq> <source hash>` (the original hash kept as provenance). Empty for
-- events recorded here; covered by the chain when set.
ALTER TABLE events ADD COLUMN origin TEXT NOT NULL DEFAULT '';
CREATE INDEX events_origin ON events(origin) WHERE origin != '';
