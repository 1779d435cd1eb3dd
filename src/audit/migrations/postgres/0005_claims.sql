-- Who is carrying out which unattended work right now (a policy's turn, the due scheduled changes): a runner
-- holds its row FOR UPDATE for as long as it works and another runner skips it (SKIP LOCKED); a runner that dies
-- releases it with its connection. Coordination, not record: not part of the chain.
CREATE TABLE steward_claims (
    name TEXT PRIMARY KEY
);
DO $$
BEGIN
    GRANT SELECT, INSERT, UPDATE ON steward_claims TO steward_writer;
EXCEPTION WHEN undefined_object OR insufficient_privilege THEN
    RAISE NOTICE 'grant SELECT, INSERT, UPDATE on steward_claims to the admins yourself';
END
$$;
