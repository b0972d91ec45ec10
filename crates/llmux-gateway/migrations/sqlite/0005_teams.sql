-- Teams: a team groups keys and has limits and a budget of its own that its keys share.
-- `period` names the budget period the `period_*` counters hold (`m:2026-12`, `""` none yet);
-- a record of a later period starts them again, so a boundary needs no sweep.
CREATE TABLE gw_teams (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL UNIQUE,
    created_at    INTEGER NOT NULL,
    rpm           INTEGER,
    tpm           INTEGER,
    budget_tokens INTEGER,
    budget_cost   REAL,
    budget_period TEXT    NOT NULL DEFAULT 'none',
    spent_tokens  INTEGER NOT NULL DEFAULT 0,
    spent_cost    REAL    NOT NULL DEFAULT 0,
    period        TEXT    NOT NULL DEFAULT '',
    period_tokens INTEGER NOT NULL DEFAULT 0,
    period_cost   REAL    NOT NULL DEFAULT 0
);

-- Keys: their team, and the period of their budgets with the same counters as teams.
ALTER TABLE gw_keys ADD COLUMN team_id INTEGER REFERENCES gw_teams (id);
ALTER TABLE gw_keys ADD COLUMN budget_period TEXT NOT NULL DEFAULT 'none';
ALTER TABLE gw_keys ADD COLUMN period TEXT NOT NULL DEFAULT '';
ALTER TABLE gw_keys ADD COLUMN period_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE gw_keys ADD COLUMN period_cost REAL NOT NULL DEFAULT 0;
CREATE INDEX gw_keys_team ON gw_keys (team_id);

-- Records (and requests in flight) carry the team their key belonged to when admitted.
ALTER TABLE gw_usage ADD COLUMN team_id INTEGER;
ALTER TABLE gw_inflight ADD COLUMN team_id INTEGER;

-- Daily rollups per team (requests of keys in a team only), kept when raw rows are pruned.
CREATE TABLE gw_usage_daily_team (
    day              TEXT    NOT NULL,
    team_id          INTEGER NOT NULL,
    model            TEXT    NOT NULL,
    requests         INTEGER NOT NULL,
    errors           INTEGER NOT NULL,
    input_tokens     INTEGER NOT NULL,
    output_tokens    INTEGER NOT NULL,
    cost             REAL    NOT NULL,
    PRIMARY KEY (day, team_id, model)
);
