-- Players, their items, the ledger that explains every balance, the transfer
-- outbox and the replies of processed commands (for once-per-id).
CREATE TABLE users (
    guild_id     INTEGER NOT NULL,
    user_id      INTEGER NOT NULL,
    gold         INTEGER NOT NULL CHECK (gold >= 0),
    gems         INTEGER NOT NULL CHECK (gems >= 0),
    xp           INTEGER NOT NULL CHECK (xp >= 0),
    level        INTEGER NOT NULL,
    daily_day    INTEGER,
    daily_streak INTEGER NOT NULL,
    created_ms   INTEGER NOT NULL,
    updated_ms   INTEGER NOT NULL,
    PRIMARY KEY (guild_id, user_id)
) WITHOUT ROWID;
CREATE INDEX users_by_gold ON users (guild_id, gold DESC);
CREATE INDEX users_by_level ON users (guild_id, level DESC, xp DESC);

CREATE TABLE inventory (
    guild_id INTEGER NOT NULL,
    user_id  INTEGER NOT NULL,
    item     TEXT    NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity >= 0),
    PRIMARY KEY (guild_id, user_id, item)
) WITHOUT ROWID;

CREATE TABLE ledger (
    id            INTEGER PRIMARY KEY,
    guild_id      INTEGER NOT NULL,
    user_id       INTEGER NOT NULL,
    currency      TEXT    NOT NULL,
    amount        INTEGER NOT NULL,
    balance_after INTEGER NOT NULL CHECK (balance_after >= 0),
    reason        TEXT    NOT NULL,
    command_id    TEXT,
    transfer_id   TEXT,
    at_ms         INTEGER NOT NULL
);
CREATE INDEX ledger_by_user ON ledger (guild_id, user_id);

CREATE TABLE transfers (
    id          TEXT    PRIMARY KEY,
    guild_id    INTEGER NOT NULL,
    from_user   INTEGER NOT NULL,
    to_user     INTEGER NOT NULL,
    amount      INTEGER NOT NULL CHECK (amount > 0),
    created_ms  INTEGER NOT NULL,
    credited_ms INTEGER
) WITHOUT ROWID;
CREATE INDEX transfers_pending ON transfers (created_ms) WHERE credited_ms IS NULL;

CREATE TABLE commands (
    guild_id   INTEGER NOT NULL,
    user_id    INTEGER NOT NULL,
    command_id TEXT    NOT NULL,
    reply      TEXT    NOT NULL,
    at_ms      INTEGER NOT NULL,
    PRIMARY KEY (guild_id, user_id, command_id)
) WITHOUT ROWID;
CREATE INDEX commands_recent ON commands (guild_id, user_id, at_ms);
