-- Inserting a usage record no longer runs a trigger per row to clear its request's in-flight
-- journal row: with the local file journal (the default for a SQLite file) that table is
-- empty, and the trigger (a sub-program with its cursors and a lookup, per row) cost about
-- 6,600 instructions per record. The store clears the rows of a batch's records itself, in
-- the same transaction, when the table holds any.
DROP TRIGGER gw_usage_clears_inflight;
