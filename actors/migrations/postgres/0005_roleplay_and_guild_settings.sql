-- Guild settings, the audit log of admin actions, and roleplay XP.
--
-- `guild_settings` holds each setting an admin changed (absent: the
-- default). `audit_log` has a row per admin action (a setting changed, a
-- grant, an hf success), written in the same transaction as the change.
--
-- Roleplay keeps the names of the legacy bot's data: per player
-- `active_character`, `timezone`, `last_xp_reset` (the local day the daily
-- counters were last reset, YYYY-MM-DD); per character `name`, `xp`,
-- `daily_xp`, `daily_hf`, `char_buffer`, `image_url`. `rp_xp_days` is the
-- tally of XP per character and local day, written in the same transaction
-- as the XP: `kokoro check` proves every character's XP (and today's
-- counters) from it.
CREATE TABLE guild_settings (
    guild_id    BIGINT NOT NULL,
    key         TEXT    NOT NULL,
    value       TEXT    NOT NULL,
    updated_ms  BIGINT NOT NULL,
    PRIMARY KEY (guild_id, key)
);

CREATE TABLE audit_log (
    id          BIGSERIAL PRIMARY KEY,
    guild_id    BIGINT NOT NULL,
    by_user     BIGINT NOT NULL,
    action      TEXT    NOT NULL,
    target_user BIGINT,
    key         TEXT    NOT NULL,
    old_value   TEXT    NOT NULL,
    new_value   TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    command_id  TEXT,
    at_ms       BIGINT NOT NULL
);
CREATE INDEX audit_log_by_guild ON audit_log (guild_id, at_ms);

CREATE TABLE rp_players (
    guild_id         BIGINT NOT NULL,
    user_id          BIGINT NOT NULL,
    active_character TEXT,
    timezone         TEXT    NOT NULL,
    last_xp_reset    TEXT,
    PRIMARY KEY (guild_id, user_id)
);

CREATE TABLE rp_characters (
    guild_id    BIGINT NOT NULL,
    user_id     BIGINT NOT NULL,
    id          BIGINT NOT NULL,
    name        TEXT    NOT NULL,
    name_key    TEXT    NOT NULL,
    xp          BIGINT NOT NULL CHECK (xp >= 0),
    daily_xp    BIGINT NOT NULL CHECK (daily_xp >= 0),
    daily_hf    BIGINT NOT NULL CHECK (daily_hf >= 0),
    char_buffer BIGINT NOT NULL CHECK (char_buffer >= 0),
    image_url   TEXT,
    created_ms  BIGINT NOT NULL,
    PRIMARY KEY (guild_id, user_id, id)
);
CREATE UNIQUE INDEX rp_characters_by_name ON rp_characters (guild_id, user_id, name_key);

CREATE TABLE rp_xp_days (
    guild_id     BIGINT NOT NULL,
    user_id      BIGINT NOT NULL,
    character_id BIGINT NOT NULL,
    day          TEXT    NOT NULL,
    rp_xp        BIGINT NOT NULL CHECK (rp_xp >= 0),
    hf_xp        BIGINT NOT NULL CHECK (hf_xp >= 0),
    PRIMARY KEY (guild_id, user_id, character_id, day)
);
