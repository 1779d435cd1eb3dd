-- The shared rate budget of each service instance (its base URL): the next free turn and how long everyone
-- pauses, in microseconds of the database server's clock (one clock for every machine). Coordination, not
-- record: it is updated in place, and not part of the chain.
CREATE TABLE rate_turns (
    instance     TEXT PRIMARY KEY,
    next_at      BIGINT NOT NULL DEFAULT 0,
    paused_until BIGINT NOT NULL DEFAULT 0
);
DO $$
BEGIN
    GRANT SELECT, INSERT, UPDATE ON rate_turns TO steward_writer;
EXCEPTION WHEN undefined_object OR insufficient_privilege THEN
    RAISE NOTICE 'grant SELECT, INSERT, UPDATE on rate_turns to the admins yourself';
END
$$;
