-- Who wrote a row, where the store can tell (a team log's database sets it to the writing role); always empty
-- in a SQLite log, which one admin writes. Decisions rest only on rows written by their run's writer.
ALTER TABLE runs ADD COLUMN writer TEXT;
ALTER TABLE events ADD COLUMN writer TEXT;
-- Where a run was first recorded, when `audit push` copied it from another log: `<source log> <source run>`
-- (its events' `origin` say the same, under the chain), so the run number people knew it by still finds it.
ALTER TABLE runs ADD COLUMN origin TEXT;
