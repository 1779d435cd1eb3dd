-- Who wrote each row, as the database knows it: the session's login role, which no client chooses (SET ROLE does
-- not change it). Set by the database on every insert, and any other value refused, so a teammate with the
-- writer role cannot write a row that passes for another's. Rows from before carry none.
--
-- And when: a row's time (`ts`, written by the client and covered by the chain) may not run ahead of the
-- database's clock by more than five minutes (a machine whose clock is that far off is told to fix it);
-- `written_at` is the database's own time of the insert.
ALTER TABLE runs ADD COLUMN writer TEXT;
ALTER TABLE events ADD COLUMN writer TEXT;
ALTER TABLE events ADD COLUMN written_at TIMESTAMPTZ;
CREATE FUNCTION steward_stamp_writer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.writer IS NOT NULL AND NEW.writer <> session_user THEN
        RAISE EXCEPTION 'a row''s writer is the role writing it (%), not %', session_user, NEW.writer;
    END IF;
    NEW.writer := session_user;
    IF TG_TABLE_NAME = 'events' THEN
        NEW.written_at := clock_timestamp();
        IF NEW.ts::timestamptz > clock_timestamp() + interval '5 minutes' THEN
            RAISE EXCEPTION 'the event''s time % is ahead of the database''s clock (%): this machine''s clock is wrong; set it right (NTP) and run again',
                NEW.ts, clock_timestamp();
        END IF;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER runs_writer BEFORE INSERT ON runs FOR EACH ROW EXECUTE FUNCTION steward_stamp_writer();
CREATE TRIGGER events_writer BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION steward_stamp_writer();
-- Where a run was first recorded, when `audit push` copied it from another log: `<source log> <source run>`
-- (its events' `origin` say the same, under the chain), so the run number people knew it by still finds it.
ALTER TABLE runs ADD COLUMN origin TEXT;
CREATE INDEX runs_origin ON runs(origin) WHERE origin IS NOT NULL;
