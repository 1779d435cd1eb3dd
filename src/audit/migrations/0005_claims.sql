-- A live intent claims its target until its outcome is recorded: `claim` is `<profile> <target as the service
-- compares names>`. It coordinates processes sharing the log (two never send to one account at once) and is not
-- part of the record: the chain does not cover it, and rows from before it have none.
ALTER TABLE events ADD COLUMN claim TEXT;
CREATE INDEX events_claim ON events(claim) WHERE claim IS NOT NULL;
