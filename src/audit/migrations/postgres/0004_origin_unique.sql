-- An event is copied in once: two pushes of one log at the same moment (each reads what was pushed before it
-- takes the chain's lock) cannot both append the same source event.
DROP INDEX events_origin;
CREATE UNIQUE INDEX events_origin ON events(origin) WHERE origin != '';
