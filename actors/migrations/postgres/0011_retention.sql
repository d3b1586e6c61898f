-- Retention: processed command ids past the window are deleted by age
-- (this index finds them), and finished jobs past theirs too. A pruned
-- job's charge or refund stays in the ledger, which is never pruned, so
-- its sum is kept here for `kokoro check` (one row, id 1, made by the
-- first prune).
CREATE INDEX commands_by_age ON commands (at_ms);
CREATE INDEX jobs_finished ON jobs (finished_ms) WHERE status <> 'queued';
CREATE TABLE jobs_pruned (
    id        BIGINT PRIMARY KEY CHECK (id = 1),
    jobs      BIGINT NOT NULL,
    charged   BIGINT NOT NULL,
    refunded  BIGINT NOT NULL
);
