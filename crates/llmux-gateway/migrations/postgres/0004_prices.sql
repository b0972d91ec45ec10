-- Price overrides set through the admin API (PUT /admin/prices/{model}), above the configured
-- and built-in prices. `price` is the override as JSON (per-1M-token prices and currency).
CREATE TABLE gw_prices (
    model      TEXT    PRIMARY KEY,
    price      TEXT    NOT NULL,
    updated_at BIGINT NOT NULL
);
