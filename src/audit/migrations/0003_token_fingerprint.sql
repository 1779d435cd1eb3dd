-- Which token acted, as a keyed hash (HMAC-SHA256 under the key in `audit.db.key`), never the token itself.
-- Older rows keep '' here; the chain encodes the field only when it is set, so they still verify.
ALTER TABLE events ADD COLUMN token_fp TEXT NOT NULL DEFAULT '';
CREATE INDEX events_token_fp ON events(token_fp);
