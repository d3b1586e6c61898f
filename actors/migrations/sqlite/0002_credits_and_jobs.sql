-- Credits (the currency of generation jobs), the daily lucky discount, and
-- the jobs of the image and video queues. A job row is written with the
-- credits it cost, in one transaction; it leaves `queued` exactly once
-- (done, failed or cancelled), and failed or cancelled jobs are refunded in
-- that same transaction.
ALTER TABLE users ADD COLUMN credits INTEGER NOT NULL DEFAULT 0 CHECK (credits >= 0);
ALTER TABLE users ADD COLUMN lucky_day INTEGER;
ALTER TABLE users ADD COLUMN lucky_pct INTEGER NOT NULL DEFAULT 0;

CREATE TABLE jobs (
    id          TEXT    PRIMARY KEY,
    guild_id    INTEGER NOT NULL,
    user_id     INTEGER NOT NULL,
    workflow    TEXT    NOT NULL,
    prompt      TEXT    NOT NULL,
    cost        INTEGER NOT NULL CHECK (cost >= 0),
    status      TEXT    NOT NULL,
    result      TEXT,
    created_ms  INTEGER NOT NULL,
    finished_ms INTEGER
) WITHOUT ROWID;
CREATE INDEX jobs_by_user ON jobs (guild_id, user_id, created_ms);
CREATE INDEX jobs_open ON jobs (created_ms) WHERE status = 'queued';
