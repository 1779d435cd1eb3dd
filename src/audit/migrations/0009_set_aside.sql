-- Rows the log's owner set aside (`steward audit set-aside`): a row that breaks the chain (a teammate's, on a
-- team log) stops every action until then; once set aside it is skipped by the chain, kept, and named by
-- `audit verify`. The setting aside is itself an event in the chain.
CREATE TABLE steward_set_aside (
    seq  INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    why  TEXT NOT NULL
);
