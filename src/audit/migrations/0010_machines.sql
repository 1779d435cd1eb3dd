-- Each machine signs the rows it writes with a key of its own (`machine.rs`), registered here when it first
-- writes: a row names the machine that wrote it, and the last row of each transaction carries that machine's
-- seal over the transaction's rows. A run names the machine that ran it; decisions rest only on rows sealed
-- by their run's machine. Rows from before carry none (`from_seq`: where each machine's rows begin).
ALTER TABLE runs ADD COLUMN machine TEXT;
ALTER TABLE events ADD COLUMN machine TEXT;
ALTER TABLE events ADD COLUMN seal TEXT;
CREATE TABLE steward_machines (
    id         TEXT PRIMARY KEY,
    public_key TEXT NOT NULL,
    host       TEXT NOT NULL,
    writer     TEXT,
    from_seq   INTEGER NOT NULL,
    joined_at  TEXT NOT NULL
);
CREATE TRIGGER steward_machines_no_update BEFORE UPDATE ON steward_machines BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER steward_machines_no_delete BEFORE DELETE ON steward_machines BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
