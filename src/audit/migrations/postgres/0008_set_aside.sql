-- Rows the log's owner set aside (`steward audit set-aside`): a row that breaks the chain (a teammate's) stops
-- every action until then; once set aside it is skipped by the chain, kept, and named by `audit verify`. The
-- setting aside is itself an event in the chain. Writers read this table; only the owner adds to it.
CREATE TABLE steward_set_aside (
    seq     BIGINT PRIMARY KEY,
    hash    TEXT NOT NULL,
    why     TEXT NOT NULL,
    by_role TEXT NOT NULL DEFAULT session_user,
    at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
REVOKE ALL ON steward_set_aside FROM PUBLIC;
CREATE TRIGGER steward_set_aside_append_only BEFORE UPDATE OR DELETE ON steward_set_aside
    FOR EACH ROW EXECUTE FUNCTION steward_append_only();
DO $$
BEGIN
    GRANT SELECT ON steward_set_aside TO steward_writer;
EXCEPTION WHEN undefined_object OR insufficient_privilege THEN
    RAISE NOTICE 'grant SELECT on steward_set_aside to the admins yourself';
END
$$;
