-- Binds each event to the record of the run that made it (who, where, which command and script, what it
-- resumed): SHA-256 of the run row's canonical encoding. Older rows keep '' here and are not bound; the chain
-- encodes the field only when it is set, so they still verify.
ALTER TABLE events ADD COLUMN run_digest TEXT NOT NULL DEFAULT '';
