-- The response cache: records of answers served from it, and each key's own cache setting.
-- `cache` NULL follows `[cache] mode`; `cache_ttl` (seconds) NULL follows `[cache] ttl`.
ALTER TABLE gw_usage ADD COLUMN cache_hit BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE gw_keys ADD COLUMN cache BOOLEAN;
ALTER TABLE gw_keys ADD COLUMN cache_ttl BIGINT;
