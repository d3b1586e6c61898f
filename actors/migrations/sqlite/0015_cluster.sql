-- Cluster mode (several nodes over one database, leases fencing writes)
-- runs on PostgreSQL only; SQLite serves one node. This migration keeps the
-- two backends' schema versions in step, so a backup restores across them.
SELECT 1;
