-- Arena entries: written with the entry fee when a player joins, matched
-- (both entries of a battle in one transaction) by the arena actor, and
-- closed once, either `left` (refunded) or `rewarded` (prize and XP paid).
-- A status moves only forward, and only from the state it is expected in,
-- so a leave racing a match, or a result delivered twice, pays nothing twice.
CREATE TABLE arena_entries (
    id          TEXT    PRIMARY KEY,
    guild_id    BIGINT NOT NULL,
    user_id     BIGINT NOT NULL,
    fee         BIGINT NOT NULL CHECK (fee >= 0),
    power       BIGINT NOT NULL,
    status      TEXT    NOT NULL,
    battle_id   TEXT,
    opponent_id BIGINT,
    won         BIGINT,
    prize       BIGINT,
    created_ms  BIGINT NOT NULL,
    matched_ms  BIGINT,
    closed_ms   BIGINT
);
CREATE INDEX arena_by_user ON arena_entries (guild_id, user_id, created_ms);
CREATE INDEX arena_open ON arena_entries (created_ms) WHERE status IN ('waiting', 'matched');
