-- pgbench script: the transaction a conventional bot runs for one `give`
-- (kokoro's own baseline, `conventional` in actors/src/store/queries.rs):
-- both rows locked in id order, the command id checked, debit with its
-- ledger row and outbox row, the command recorded, credit with its ledger
-- row, the transfer marked credited. One transaction, one fsync.
\set a random(1, :players)
\set b random(1, :players - 1)
\if :b >= :a
\set b :b + 1
\endif
\set lo least(:a, :b)
\set hi greatest(:a, :b)
\set id random(1, 9000000000000000000)
BEGIN;
SELECT gold FROM users WHERE guild_id = 1 AND user_id = :lo FOR UPDATE;
SELECT gold FROM users WHERE guild_id = 1 AND user_id = :hi FOR UPDATE;
SELECT reply FROM commands WHERE guild_id = 1 AND user_id = :a AND command_id = 'pgb-' || :id;
UPDATE users SET gold = gold - 1, updated_ms = 1 WHERE guild_id = 1 AND user_id = :a;
INSERT INTO ledger (guild_id, user_id, currency, amount, balance_after, reason, command_id, transfer_id, at_ms)
  SELECT 1, :a, 'gold', -1, gold, 'give', 'pgb-' || :id, 'pgb-' || :id, 1 FROM users WHERE guild_id = 1 AND user_id = :a;
INSERT INTO transfers (id, guild_id, from_user, to_user, amount, created_ms) VALUES ('pgb-' || :id, 1, :a, :b, 1, 1);
INSERT INTO commands (guild_id, user_id, command_id, reply, at_ms) VALUES (1, :a, 'pgb-' || :id, '{"ok":true,"command":"give","data":{"gold":0},"message":"sent"}', 1);
UPDATE users SET gold = gold + 1, updated_ms = 1 WHERE guild_id = 1 AND user_id = :b;
INSERT INTO ledger (guild_id, user_id, currency, amount, balance_after, reason, transfer_id, at_ms)
  SELECT 1, :b, 'gold', 1, gold, 'receive', 'pgb-' || :id, 1 FROM users WHERE guild_id = 1 AND user_id = :b;
UPDATE transfers SET credited_ms = 1 WHERE id = 'pgb-' || :id;
END;
