-- One row per steward invocation that performed an action.
CREATE TABLE runs (
    id            INTEGER PRIMARY KEY,
    started_at    TEXT NOT NULL,
    os_user       TEXT NOT NULL,
    host          TEXT NOT NULL,
    command       TEXT NOT NULL,
    script_path   TEXT,
    script_sha256 TEXT
);

-- How a run ended; a separate table so that nothing is ever updated.
CREATE TABLE run_ends (
    run_id      INTEGER PRIMARY KEY REFERENCES runs(id),
    ended_at    TEXT NOT NULL,
    exit_status INTEGER NOT NULL
);

-- Every action: an intent before a mutation is sent, an outcome after; hash-chained in seq order.
CREATE TABLE events (
    seq          INTEGER PRIMARY KEY,
    run_id       INTEGER NOT NULL,
    ts           TEXT NOT NULL,
    profile      TEXT NOT NULL,
    kind         TEXT NOT NULL,
    base_url     TEXT NOT NULL,
    identity     TEXT NOT NULL,
    op           TEXT NOT NULL,
    target       TEXT NOT NULL,
    params       TEXT NOT NULL,
    mode         TEXT NOT NULL,
    phase        TEXT NOT NULL,
    intent_seq   INTEGER,
    status       TEXT NOT NULL,
    http_status  INTEGER,
    error        TEXT NOT NULL,
    duration_ms  INTEGER,
    token_source TEXT NOT NULL,
    prev_hash    TEXT NOT NULL,
    hash         TEXT NOT NULL
);
CREATE INDEX events_run ON events(run_id);
CREATE INDEX events_target ON events(target);
CREATE INDEX events_intent ON events(intent_seq);

-- Append-only: these stop accidents, not attackers (the hash chain catches those).
CREATE TRIGGER events_no_update BEFORE UPDATE ON events BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER runs_no_update BEFORE UPDATE ON runs BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER runs_no_delete BEFORE DELETE ON runs BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER run_ends_no_update BEFORE UPDATE ON run_ends BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER run_ends_no_delete BEFORE DELETE ON run_ends BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
