-- The input image of a job whose workflow takes one: the player's upload
-- id (the file is under the data dir's uploads/).
ALTER TABLE jobs ADD COLUMN image TEXT;
