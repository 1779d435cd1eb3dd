-- The team audit log on PostgreSQL: the same tables as the SQLite log (schema 6), with PostgreSQL's types.
-- Integers are BIGINT throughout and times RFC 3339 text, so rows read back exactly as SQLite's do and hash
-- the same.
CREATE TABLE steward_schema (version BIGINT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now());

-- One row per steward invocation that performed an action.
CREATE TABLE runs (
    id              BIGSERIAL PRIMARY KEY,
    started_at      TEXT NOT NULL,
    os_user         TEXT NOT NULL,
    host            TEXT NOT NULL,
    command         TEXT NOT NULL,
    script_path     TEXT,
    script_sha256   TEXT,
    resumed_from    BIGINT,
    default_profile TEXT
);

-- How a run ended; a separate table so that nothing is ever updated.
CREATE TABLE run_ends (
    run_id      BIGINT PRIMARY KEY REFERENCES runs(id),
    ended_at    TEXT NOT NULL,
    exit_status BIGINT NOT NULL
);

-- Every action: an intent before a mutation is sent, an outcome after; one hash chain in seq order for the
-- whole team. Writers take the chain's advisory lock, so seq is the head's plus one; the primary key stops a
-- writer that did not.
CREATE TABLE events (
    seq          BIGINT PRIMARY KEY,
    run_id       BIGINT NOT NULL,
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
    intent_seq   BIGINT,
    status       TEXT NOT NULL,
    http_status  BIGINT,
    error        TEXT NOT NULL,
    duration_ms  BIGINT,
    token_source TEXT NOT NULL,
    prev_hash    TEXT NOT NULL,
    hash         TEXT NOT NULL,
    token_fp     TEXT NOT NULL DEFAULT '',
    run_digest   TEXT NOT NULL DEFAULT '',
    claim        TEXT
);
CREATE INDEX events_run ON events(run_id);
CREATE INDEX events_target ON events(target);
CREATE INDEX events_intent ON events(intent_seq);
CREATE INDEX events_token_fp ON events(token_fp);
CREATE INDEX events_claim ON events(claim) WHERE claim IS NOT NULL;

-- Append-only for every role, the owner included: these stop accidents and the writer role, not a superuser
-- (the hash chain and the checkpoints outside the database catch that).
CREATE FUNCTION steward_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only (% on %)', TG_OP, TG_TABLE_NAME;
END
$$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION steward_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION steward_append_only();
CREATE TRIGGER runs_append_only BEFORE UPDATE OR DELETE ON runs
    FOR EACH ROW EXECUTE FUNCTION steward_append_only();
CREATE TRIGGER runs_no_truncate BEFORE TRUNCATE ON runs
    FOR EACH STATEMENT EXECUTE FUNCTION steward_append_only();
CREATE TRIGGER run_ends_append_only BEFORE UPDATE OR DELETE ON run_ends
    FOR EACH ROW EXECUTE FUNCTION steward_append_only();
CREATE TRIGGER run_ends_no_truncate BEFORE TRUNCATE ON run_ends
    FOR EACH STATEMENT EXECUTE FUNCTION steward_append_only();

-- The role admins' logins are made members of: it reads and appends, and nothing else (no UPDATE, DELETE or
-- TRUNCATE grant, so those fail on permissions before any trigger). Made only where the creator may make roles.
REVOKE ALL ON steward_schema, runs, run_ends, events FROM PUBLIC;
DO $$
BEGIN
    -- Roles are the server's, not the database's: another database's first use (a second team's log) may make
    -- it at the same moment.
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'steward_writer') THEN
        CREATE ROLE steward_writer NOLOGIN;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
    WHEN insufficient_privilege THEN
        RAISE NOTICE 'steward_writer was not made (no CREATEROLE): grant SELECT, INSERT to the admins yourself';
END
$$;
DO $$
BEGIN
    GRANT SELECT ON steward_schema TO steward_writer;
    GRANT SELECT, INSERT ON runs, run_ends, events TO steward_writer;
    GRANT USAGE ON SEQUENCE runs_id_seq TO steward_writer;
EXCEPTION WHEN undefined_object OR insufficient_privilege THEN
    NULL;
END
$$;
