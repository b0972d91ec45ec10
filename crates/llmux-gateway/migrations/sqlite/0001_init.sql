-- Virtual keys: only the SHA-256 hash of a key is stored, never the key.
CREATE TABLE gw_keys (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL,
    key_hash      TEXT    NOT NULL UNIQUE,
    prefix        TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER,
    revoked       BOOLEAN NOT NULL DEFAULT FALSE,
    models        TEXT    NOT NULL DEFAULT '[]',
    rpm           INTEGER,
    tpm           INTEGER,
    budget_tokens INTEGER,
    budget_cost   REAL,
    spent_tokens  INTEGER NOT NULL DEFAULT 0,
    spent_cost    REAL    NOT NULL DEFAULT 0
);

-- One row per completed request; request_id makes a replayed batch a no-op.
CREATE TABLE gw_usage (
    request_id       TEXT    PRIMARY KEY,
    at_ms            INTEGER NOT NULL,
    day              TEXT    NOT NULL,
    key_id           INTEGER,
    channel          TEXT    NOT NULL,
    provider         TEXT    NOT NULL,
    model            TEXT    NOT NULL,
    upstream_model   TEXT    NOT NULL,
    input_tokens     INTEGER NOT NULL,
    output_tokens    INTEGER NOT NULL,
    cached_tokens    INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    cost             REAL    NOT NULL,
    latency_ms       INTEGER NOT NULL,
    ttft_ms          INTEGER,
    status           INTEGER NOT NULL,
    error_kind       TEXT,
    cancelled        BOOLEAN NOT NULL,
    stream           BOOLEAN NOT NULL,
    usage_estimated  BOOLEAN NOT NULL
);
CREATE INDEX gw_usage_at_ms ON gw_usage (at_ms);

-- Daily rollups, kept when raw rows are pruned. key_id 0 = requests without a key.
CREATE TABLE gw_usage_daily (
    day              TEXT    NOT NULL,
    key_id           INTEGER NOT NULL,
    model            TEXT    NOT NULL,
    requests         INTEGER NOT NULL,
    errors           INTEGER NOT NULL,
    input_tokens     INTEGER NOT NULL,
    output_tokens    INTEGER NOT NULL,
    cached_tokens    INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    cost             REAL    NOT NULL,
    PRIMARY KEY (day, key_id, model)
);
