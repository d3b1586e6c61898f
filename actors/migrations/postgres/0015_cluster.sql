-- Cluster mode (several kokoro nodes over this database): who owns which
-- slot of guilds. PostgreSQL decides ownership and fences writes; no row
-- here is touched outside cluster mode.

-- One row per cluster: its slot count, fixed when the cluster is first made.
CREATE TABLE cluster_config (
    cluster TEXT PRIMARY KEY,
    slots INTEGER NOT NULL CHECK (slots > 0),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A lease per slot: its owner (NULL: free), the epoch that each taking
-- raises (a write checks it, in its own transaction, FOR SHARE), and when
-- the lease runs out on the database's clock.
CREATE TABLE cluster_leases (
    cluster TEXT NOT NULL REFERENCES cluster_config (cluster),
    slot INTEGER NOT NULL CHECK (slot >= 0),
    owner TEXT,
    epoch BIGINT NOT NULL DEFAULT 0,
    expires_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (cluster, slot)
);

-- The nodes, by heartbeat: each aims at slots / live nodes.
CREATE TABLE cluster_members (
    cluster TEXT NOT NULL,
    node_id TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Its lease TTL: it is live while its heartbeat is younger than that.
    lease_ttl_ms BIGINT NOT NULL,
    PRIMARY KEY (cluster, node_id)
);
