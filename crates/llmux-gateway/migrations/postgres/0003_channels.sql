-- Channels managed at runtime. `spec` is the channel's JSON definition without credentials;
-- `secrets` its credentials as one value sealed with the master key (never plaintext). A
-- `file` row holds only the enabled state an admin set on a channel of llmux.toml.
CREATE TABLE gw_channels (
    name       TEXT    PRIMARY KEY,
    source     TEXT    NOT NULL,
    enabled    BOOLEAN NOT NULL DEFAULT TRUE,
    spec       TEXT,
    secrets    TEXT,
    version    BIGINT  NOT NULL DEFAULT 1,
    created_at BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL
);

-- One row: bumped by every change of gw_channels, polled by every gateway.
CREATE TABLE gw_channel_rev (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    rev BIGINT NOT NULL
);
INSERT INTO gw_channel_rev (id, rev) VALUES (1, 0);
