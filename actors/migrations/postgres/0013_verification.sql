-- Whether a member has verified in their guild (the verification button, or
-- an admin's or an integration's `verify {user}`); who and when is in the
-- audit log. Written with the player's row, like every other field of it.
ALTER TABLE users ADD COLUMN verified BIGINT NOT NULL DEFAULT 0;
