-- Character collection. `characters` holds what a player owns, as absolute
-- values written by their actor; `summons` is the history every summon
-- leaves (in the same transaction as its gems), which explains the pity
-- counters and the shards, with `upgrades`, the shards each level cost;
-- `pity` holds each banner's counter; `teams` the up to three characters a
-- player fights with. `kokoro check` proves characters and pity from the
-- two logs.
CREATE TABLE characters (
    guild_id    BIGINT NOT NULL,
    user_id     BIGINT NOT NULL,
    name        TEXT    NOT NULL,
    level       BIGINT NOT NULL CHECK (level >= 1),
    shards      BIGINT NOT NULL CHECK (shards >= 0),
    copies      BIGINT NOT NULL CHECK (copies >= 1),
    PRIMARY KEY (guild_id, user_id, name)
);

CREATE TABLE pity (
    guild_id    BIGINT NOT NULL,
    user_id     BIGINT NOT NULL,
    banner      TEXT    NOT NULL,
    since_ssr   BIGINT NOT NULL CHECK (since_ssr >= 0),
    summons     BIGINT NOT NULL CHECK (summons >= 0),
    PRIMARY KEY (guild_id, user_id, banner)
);

CREATE TABLE summons (
    guild_id    BIGINT NOT NULL,
    user_id     BIGINT NOT NULL,
    banner      TEXT    NOT NULL,
    seq         BIGINT NOT NULL,
    character   TEXT    NOT NULL,
    rarity      TEXT    NOT NULL,
    by_pity     BIGINT NOT NULL,
    shards      BIGINT NOT NULL,
    at_ms       BIGINT NOT NULL,
    PRIMARY KEY (guild_id, user_id, banner, seq)
);

CREATE TABLE teams (
    guild_id    BIGINT NOT NULL,
    user_id     BIGINT NOT NULL,
    members     TEXT    NOT NULL,
    PRIMARY KEY (guild_id, user_id)
);

CREATE TABLE upgrades (
    guild_id    BIGINT NOT NULL,
    user_id     BIGINT NOT NULL,
    character   TEXT    NOT NULL,
    level       BIGINT NOT NULL,
    shards      BIGINT NOT NULL,
    gold        BIGINT NOT NULL,
    at_ms       BIGINT NOT NULL,
    PRIMARY KEY (guild_id, user_id, character, level)
);
