-- Free generation jobs and VIP, per player: when their trial began, until
-- when they are VIP, and the free jobs they used on one UTC day, per
-- workflow (`image:2,upscale:1`). Written by their actor, in the same
-- transaction as the job it counts.
CREATE TABLE gen_players (
    guild_id     INTEGER NOT NULL,
    user_id      INTEGER NOT NULL,
    since_ms     INTEGER NOT NULL,
    vip_until_ms INTEGER,
    free_day     INTEGER,
    free_used    TEXT    NOT NULL,
    PRIMARY KEY (guild_id, user_id)
) WITHOUT ROWID;
