-- Keys the whole team shares, kept with its log so every machine computes the same: the token-fingerprint key
-- (one fingerprint per token, whichever machine used it). Writers read them: a fingerprint is only as private
-- as the log it is in. Made once by the first machine that needs one, and never changed.
CREATE TABLE steward_keys (
    name    TEXT PRIMARY KEY,
    value   TEXT NOT NULL,
    made_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
REVOKE ALL ON steward_keys FROM PUBLIC;
CREATE TRIGGER steward_keys_append_only BEFORE UPDATE OR DELETE ON steward_keys
    FOR EACH ROW EXECUTE FUNCTION steward_append_only();
CREATE TRIGGER steward_keys_no_truncate BEFORE TRUNCATE ON steward_keys
    FOR EACH STATEMENT EXECUTE FUNCTION steward_append_only();
DO $$
BEGIN
    GRANT SELECT, INSERT ON steward_keys TO steward_writer;
EXCEPTION WHEN undefined_object OR insufficient_privilege THEN
    RAISE NOTICE 'grant SELECT, INSERT on steward_keys to the admins yourself';
END
$$;
