-- The usage-event outbox (`[events]`): one row per usage record still to be published to the
-- event broker, inserted in the same transaction as the record itself, so a record is in the
-- store if and only if its event is published or waiting here. Publishers claim rows (a lease:
-- `claimed_by` and `claimed_until`, unix ms; `FOR UPDATE SKIP LOCKED`, so replicas draining
-- at once take different rows), publish them with acknowledgements, and delete them only after
-- the broker acknowledged; a claim that lapses (its publisher died) makes the rows claimable
-- again.
CREATE TABLE gw_outbox (
    seq           BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id    TEXT    NOT NULL UNIQUE,
    created_ms    BIGINT  NOT NULL,
    payload       TEXT    NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    claimed_by    TEXT,
    claimed_until BIGINT  NOT NULL DEFAULT 0
);
