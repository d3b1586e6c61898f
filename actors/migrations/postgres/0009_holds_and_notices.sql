-- Holds: a job queued from now on holds its price (`held` = 1): the credits
-- stay in the balance but cannot be spent (available = balance - holds)
-- and are charged only when the job succeeds, or released when it fails or
-- is cancelled, in the transaction that closes it. Jobs queued before this
-- migration (`held` = 0) were charged when queued and are refunded if they
-- fail, as before.
ALTER TABLE jobs ADD COLUMN held BIGINT NOT NULL DEFAULT 0;
-- Where the player asked, so they hear back when the job ends, written by
-- the front door: `discord:<channel id>`, `telegram:<chat id>`; NULL for
-- HTTP clients, who read `jobs`.
ALTER TABLE jobs ADD COLUMN notify TEXT;
-- When the player was told that the job ended (NULL: not yet). A front
-- door tells each ended job once, also one that ended while it was down.
ALTER TABLE jobs ADD COLUMN notified_ms BIGINT;
CREATE INDEX jobs_to_notify ON jobs (finished_ms) WHERE notify IS NOT NULL AND notified_ms IS NULL AND status <> 'queued';
