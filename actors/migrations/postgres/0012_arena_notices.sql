-- Where a player joined the arena from, so they are told who won when the
-- battle is fought (`discord:<channel id>`; NULL for HTTP clients, who read
-- `arena_status`), and when they were told (NULL: not yet). Told once,
-- also for a battle fought while the front door was down.
ALTER TABLE arena_entries ADD COLUMN notify TEXT;
ALTER TABLE arena_entries ADD COLUMN notified_ms BIGINT;
CREATE INDEX arena_to_notify ON arena_entries (closed_ms) WHERE notify IS NOT NULL AND notified_ms IS NULL AND status = 'rewarded';
