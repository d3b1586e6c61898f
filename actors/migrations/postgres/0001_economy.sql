-- Players, their items, the ledger that explains every balance, the transfer
-- outbox and the replies of processed commands (for once-per-id).
CREATE TABLE users (
    guild_id     BIGINT NOT NULL,
    user_id      BIGINT NOT NULL,
    gold         BIGINT NOT NULL CHECK (gold >= 0),
    gems         BIGINT NOT NULL CHECK (gems >= 0),
    xp           BIGINT NOT NULL CHECK (xp >= 0),
    level        BIGINT NOT NULL,
    daily_day    BIGINT,
    daily_streak BIGINT NOT NULL,
    created_ms   BIGINT NOT NULL,
    updated_ms   BIGINT NOT NULL,
    PRIMARY KEY (guild_id, user_id)
);
CREATE INDEX users_by_gold ON users (guild_id, gold DESC);
CREATE INDEX users_by_level ON users (guild_id, level DESC, xp DESC);

CREATE TABLE inventory (
    guild_id BIGINT NOT NULL,
    user_id  BIGINT NOT NULL,
    item     TEXT   NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity >= 0),
    PRIMARY KEY (guild_id, user_id, item)
);

CREATE TABLE ledger (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    guild_id      BIGINT NOT NULL,
    user_id       BIGINT NOT NULL,
    currency      TEXT   NOT NULL,
    amount        BIGINT NOT NULL,
    balance_after BIGINT NOT NULL CHECK (balance_after >= 0),
    reason        TEXT   NOT NULL,
    command_id    TEXT,
    transfer_id   TEXT,
    at_ms         BIGINT NOT NULL
);
CREATE INDEX ledger_by_user ON ledger (guild_id, user_id);

CREATE TABLE transfers (
    id          TEXT   PRIMARY KEY,
    guild_id    BIGINT NOT NULL,
    from_user   BIGINT NOT NULL,
    to_user     BIGINT NOT NULL,
    amount      BIGINT NOT NULL CHECK (amount > 0),
    created_ms  BIGINT NOT NULL,
    credited_ms BIGINT
);
CREATE INDEX transfers_pending ON transfers (created_ms) WHERE credited_ms IS NULL;

CREATE TABLE commands (
    guild_id   BIGINT NOT NULL,
    user_id    BIGINT NOT NULL,
    command_id TEXT   NOT NULL,
    reply      TEXT   NOT NULL,
    at_ms      BIGINT NOT NULL,
    PRIMARY KEY (guild_id, user_id, command_id)
);
CREATE INDEX commands_recent ON commands (guild_id, user_id, at_ms);
