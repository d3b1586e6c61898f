-- Character collection. `characters` holds what a player owns, as absolute
-- values written by their actor; `summons` is the history every summon
-- leaves (in the same transaction as its gems), which explains the pity
-- counters and the shards, with `upgrades`, the shards each level cost;
-- `pity` holds each banner's counter; `teams` the up to three characters a
-- player fights with. `kokoro check` proves characters and pity from the
-- two logs.
CREATE TABLE characters (
    guild_id    INTEGER NOT NULL,
    user_id     INTEGER NOT NULL,
    name        TEXT    NOT NULL,
    level       INTEGER NOT NULL CHECK (level >= 1),
    shards      INTEGER NOT NULL CHECK (shards >= 0),
    copies      INTEGER NOT NULL CHECK (copies >= 1),
    PRIMARY KEY (guild_id, user_id, name)
) WITHOUT ROWID;

CREATE TABLE pity (
    guild_id    INTEGER NOT NULL,
    user_id     INTEGER NOT NULL,
    banner      TEXT    NOT NULL,
    since_ssr   INTEGER NOT NULL CHECK (since_ssr >= 0),
    summons     INTEGER NOT NULL CHECK (summons >= 0),
    PRIMARY KEY (guild_id, user_id, banner)
) WITHOUT ROWID;

CREATE TABLE summons (
    guild_id    INTEGER NOT NULL,
    user_id     INTEGER NOT NULL,
    banner      TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    character   TEXT    NOT NULL,
    rarity      TEXT    NOT NULL,
    by_pity     INTEGER NOT NULL,
    shards      INTEGER NOT NULL,
    at_ms       INTEGER NOT NULL,
    PRIMARY KEY (guild_id, user_id, banner, seq)
) WITHOUT ROWID;

CREATE TABLE teams (
    guild_id    INTEGER NOT NULL,
    user_id     INTEGER NOT NULL,
    members     TEXT    NOT NULL,
    PRIMARY KEY (guild_id, user_id)
) WITHOUT ROWID;

CREATE TABLE upgrades (
    guild_id    INTEGER NOT NULL,
    user_id     INTEGER NOT NULL,
    character   TEXT    NOT NULL,
    level       INTEGER NOT NULL,
    shards      INTEGER NOT NULL,
    gold        INTEGER NOT NULL,
    at_ms       INTEGER NOT NULL,
    PRIMARY KEY (guild_id, user_id, character, level)
) WITHOUT ROWID;
