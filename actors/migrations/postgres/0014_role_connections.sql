-- Members who linked kokoro's connection for Discord's Linked Roles: their
-- OAuth2 tokens (secrets: never logged), so kokoro can write their
-- connection again as their game changes. One row per Discord user.
CREATE TABLE role_connections (
    user_id BIGINT PRIMARY KEY,
    access_token TEXT NOT NULL,
    refresh_token TEXT NOT NULL,
    expires_ms BIGINT NOT NULL,
    linked_ms BIGINT NOT NULL
);
