-- The workflow a player chose for their next job (a conversation's first
-- step: Telegram's buttons), and when; a `generate` naming no workflow
-- takes it, within the hour, and uses it up.
ALTER TABLE gen_players ADD COLUMN chosen_workflow TEXT;
ALTER TABLE gen_players ADD COLUMN chosen_ms INTEGER;
