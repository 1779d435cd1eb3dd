-- Each machine signs the rows it writes with a key of its own (`machine.rs`), registered here when it first
-- writes (the database stamps the registering role, as on every row): a row names the machine that wrote it,
-- and the last row of each transaction carries that machine's seal over the transaction's rows. A run names
-- the machine that ran it; decisions rest only on rows sealed by their run's machine, so a teammate sharing a
-- login still cannot write a row that passes for another machine's. Rows from before carry none.
ALTER TABLE runs ADD COLUMN machine TEXT;
ALTER TABLE events ADD COLUMN machine TEXT;
ALTER TABLE events ADD COLUMN seal TEXT;
CREATE TABLE steward_machines (
    id         TEXT PRIMARY KEY,
    public_key TEXT NOT NULL,
    host       TEXT NOT NULL,
    writer     TEXT,
    from_seq   BIGINT NOT NULL,
    joined_at  TEXT NOT NULL
);
REVOKE ALL ON steward_machines FROM PUBLIC;
CREATE TRIGGER steward_machines_writer BEFORE INSERT ON steward_machines
    FOR EACH ROW EXECUTE FUNCTION steward_stamp_writer();
CREATE TRIGGER steward_machines_append_only BEFORE UPDATE OR DELETE ON steward_machines
    FOR EACH ROW EXECUTE FUNCTION steward_append_only();
CREATE TRIGGER steward_machines_no_truncate BEFORE TRUNCATE ON steward_machines
    FOR EACH STATEMENT EXECUTE FUNCTION steward_append_only();
DO $$
BEGIN
    GRANT SELECT, INSERT ON steward_machines TO steward_writer;
EXCEPTION WHEN undefined_object OR insufficient_privilege THEN
    RAISE NOTICE 'grant SELECT, INSERT on steward_machines to the admins yourself';
END
$$;
