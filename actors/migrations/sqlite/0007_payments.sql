-- Credits bought through the payment provider's webhook, one row per
-- provider payment id: written with its `topup` ledger row in the same
-- transaction, and once (the id is the key). A chargeback takes back what
-- it can (`clawed_back`, a `chargeback` ledger row) and records the rest as
-- `owed`: a balance never goes below zero.
CREATE TABLE payments (
    provider_id  TEXT    PRIMARY KEY,
    guild_id     INTEGER NOT NULL,
    user_id      INTEGER NOT NULL,
    credits      INTEGER NOT NULL CHECK (credits > 0),
    status       TEXT    NOT NULL,
    clawed_back  INTEGER NOT NULL DEFAULT 0 CHECK (clawed_back >= 0),
    owed         INTEGER NOT NULL DEFAULT 0 CHECK (owed >= 0),
    created_ms   INTEGER NOT NULL,
    refunded_ms  INTEGER
) WITHOUT ROWID;
CREATE INDEX payments_by_user ON payments (guild_id, user_id);
