//! The SQL of cluster mode (PostgreSQL only): the slot count, the leases,
//! the members, and what `kokoro cluster status` reads.
//!
//! Every statement that locks several lease rows locks them in slot order
//! (a CTE `ORDER BY slot FOR UPDATE`), as group commit's fence does with
//! `FOR SHARE`: two transactions never wait on each other in a circle.

use std::time::Duration;

use serde::Serialize;
use sqlx::{PgPool, Row};

use super::{ClusterConfig, ClusterError};

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Makes the cluster's rows the first time (its slot count, a free lease
/// per slot); later, checks that this node counts slots the same way.
pub async fn prepare(pool: &PgPool, config: &ClusterConfig) -> Result<(), ClusterError> {
    sqlx::query("INSERT INTO cluster_config (cluster, slots) VALUES ($1, $2) ON CONFLICT (cluster) DO NOTHING")
        .bind(&config.name)
        .bind(config.slots as i32)
        .execute(pool)
        .await?;
    let found: i32 = sqlx::query_scalar("SELECT slots FROM cluster_config WHERE cluster = $1")
        .bind(&config.name)
        .fetch_one(pool)
        .await?;
    if found != config.slots as i32 {
        return Err(ClusterError::Slots {
            cluster: config.name.clone(),
            found: found.max(0) as u32,
            given: config.slots,
        });
    }
    sqlx::query(
        "INSERT INTO cluster_leases (cluster, slot) SELECT $1, s FROM generate_series(0, $2 - 1) AS s \
         ON CONFLICT (cluster, slot) DO NOTHING",
    )
    .bind(&config.name)
    .bind(config.slots as i32)
    .execute(pool)
    .await?;
    Ok(())
}

/// A node restarted under the same id right after a kill finds its old
/// heartbeat fresh: it waits for it to run out (at most one TTL), so two
/// processes never count as one node. Its old leases run out with it and
/// are taken again with a new epoch, which fences anything of the old run.
pub async fn await_own_predecessor(
    pool: &PgPool,
    config: &ClusterConfig,
) -> Result<(), ClusterError> {
    let started = std::time::Instant::now();
    let mut warned = false;
    loop {
        let fresh: Option<bool> = sqlx::query_scalar(
            "SELECT heartbeat_at > now() - make_interval(secs => $3) FROM cluster_members \
             WHERE cluster = $1 AND node_id = $2",
        )
        .bind(&config.name)
        .bind(&config.node_id)
        .bind(secs(config.lease_ttl))
        .fetch_optional(pool)
        .await?;
        if fresh != Some(true) || started.elapsed() > config.lease_ttl * 2 {
            break;
        }
        if !warned {
            tracing::warn!(node = %config.node_id, "a node with this id heartbeat less than a lease ago; waiting for it to run out");
            warned = true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    heartbeat(pool, config).await?;
    Ok(())
}

/// A node's heartbeat: live while it is younger than the node's TTL.
const HEARTBEAT: &str = "INSERT INTO cluster_members (cluster, node_id, lease_ttl_ms) VALUES ($1, $2, $3) \
     ON CONFLICT (cluster, node_id) DO UPDATE SET heartbeat_at = now(), lease_ttl_ms = excluded.lease_ttl_ms";

async fn heartbeat<'e>(
    on: impl sqlx::PgExecutor<'e>,
    config: &ClusterConfig,
) -> Result<(), sqlx::Error> {
    sqlx::query(HEARTBEAT)
        .bind(&config.name)
        .bind(&config.node_id)
        .bind(config.lease_ttl.as_millis() as i64)
        .execute(on)
        .await?;
    Ok(())
}

/// Heartbeats, then extends the leases of `slots` this node still owns;
/// returns those, with their epochs. One transaction.
pub async fn renew(
    pool: &PgPool,
    config: &ClusterConfig,
    slots: &[i32],
) -> Result<Vec<(i32, i64)>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    heartbeat(&mut *tx, config).await?;
    let rows = if slots.is_empty() {
        Vec::new()
    } else {
        sqlx::query(
            "WITH mine AS (SELECT slot FROM cluster_leases WHERE cluster = $1 AND owner = $2 AND slot = ANY($3) \
                           ORDER BY slot FOR UPDATE) \
             UPDATE cluster_leases l SET expires_at = now() + make_interval(secs => $4) FROM mine \
             WHERE l.cluster = $1 AND l.slot = mine.slot RETURNING l.slot, l.epoch",
        )
        .bind(&config.name)
        .bind(&config.node_id)
        .bind(slots)
        .bind(secs(config.lease_ttl))
        .fetch_all(&mut *tx)
        .await?
    };
    tx.commit().await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// Nodes whose heartbeat is younger than a lease.
pub async fn live_members(pool: &PgPool, config: &ClusterConfig) -> Result<u32, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM cluster_members WHERE cluster = $1 \
         AND heartbeat_at > now() - lease_ttl_ms * interval '1 millisecond'",
    )
    .bind(&config.name)
    .fetch_one(pool)
    .await?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// Takes up to `n` free or expired slots, raising each one's epoch: the
/// slot, its new epoch, and the owner it was taken from (`None`: free).
/// Rows another transaction locks (a commit of the old owner's, finishing)
/// are skipped, and taken at a later look.
pub async fn take(
    pool: &PgPool,
    config: &ClusterConfig,
    n: u32,
) -> Result<Vec<(i32, i64, Option<String>)>, sqlx::Error> {
    let rows = sqlx::query(
        "WITH free AS (SELECT slot, owner FROM cluster_leases \
                       WHERE cluster = $1 AND (owner IS NULL OR expires_at < now()) \
                       ORDER BY slot LIMIT $3 FOR UPDATE SKIP LOCKED) \
         UPDATE cluster_leases l SET owner = $2, epoch = l.epoch + 1, \
                expires_at = now() + make_interval(secs => $4) \
         FROM free WHERE l.cluster = $1 AND l.slot = free.slot \
         RETURNING l.slot, l.epoch, free.owner",
    )
    .bind(&config.name)
    .bind(&config.node_id)
    .bind(i64::from(n))
    .bind(secs(config.lease_ttl))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect()
}

/// Frees this node's leases of `slots` (a handover): the next taker
/// raises the epoch.
pub async fn release(
    pool: &PgPool,
    config: &ClusterConfig,
    slots: &[i32],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH mine AS (SELECT slot FROM cluster_leases WHERE cluster = $1 AND owner = $2 AND slot = ANY($3) \
                       ORDER BY slot FOR UPDATE) \
         UPDATE cluster_leases l SET owner = NULL, expires_at = now() FROM mine \
         WHERE l.cluster = $1 AND l.slot = mine.slot",
    )
    .bind(&config.name)
    .bind(&config.node_id)
    .bind(slots)
    .execute(pool)
    .await?;
    Ok(())
}

/// Leaves the members (SIGTERM): the others' share grows at their next look.
pub async fn leave(pool: &PgPool, config: &ClusterConfig) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM cluster_members WHERE cluster = $1 AND node_id = $2")
        .bind(&config.name)
        .bind(&config.node_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// One node, as `kokoro cluster status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct MemberRow {
    pub node_id: String,
    /// Milliseconds since its last heartbeat.
    pub heartbeat_age_ms: i64,
    /// Its heartbeat is younger than its lease TTL.
    pub live: bool,
    pub slots: i64,
}

/// One slot's lease.
#[derive(Debug, Clone, Serialize)]
pub struct LeaseRow {
    pub slot: i32,
    pub owner: Option<String>,
    pub epoch: i64,
    /// Milliseconds until the lease runs out (negative: expired).
    pub expires_in_ms: i64,
}

/// Where every slot is.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    pub cluster: String,
    pub slots: i32,
    pub nodes: Vec<MemberRow>,
    /// Slots with no owner, or whose lease ran out.
    pub unowned: i64,
    pub leases: Vec<LeaseRow>,
}

/// The cluster as the database has it (`None`: no such cluster).
pub async fn status(pool: &PgPool, cluster: &str) -> Result<Option<ClusterStatus>, sqlx::Error> {
    let Some(slots) =
        sqlx::query_scalar::<_, i32>("SELECT slots FROM cluster_config WHERE cluster = $1")
            .bind(cluster)
            .fetch_optional(pool)
            .await?
    else {
        return Ok(None);
    };
    let leases: Vec<LeaseRow> = sqlx::query(
        "SELECT slot, owner, epoch, CAST(EXTRACT(EPOCH FROM (expires_at - now())) * 1000 AS BIGINT) \
         FROM cluster_leases WHERE cluster = $1 ORDER BY slot",
    )
    .bind(cluster)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        Ok(LeaseRow {
            slot: r.try_get(0)?,
            owner: r.try_get(1)?,
            epoch: r.try_get(2)?,
            expires_in_ms: r.try_get(3)?,
        })
    })
    .collect::<Result<_, sqlx::Error>>()?;
    let unowned = leases
        .iter()
        .filter(|l| l.owner.is_none() || l.expires_in_ms < 0)
        .count() as i64;
    let members = sqlx::query(
        "SELECT node_id, CAST(EXTRACT(EPOCH FROM (now() - heartbeat_at)) * 1000 AS BIGINT), lease_ttl_ms \
         FROM cluster_members WHERE cluster = $1 ORDER BY node_id",
    )
    .bind(cluster)
    .fetch_all(pool)
    .await?;
    let mut nodes = Vec::new();
    for r in &members {
        let node_id: String = r.try_get(0)?;
        let age: i64 = r.try_get(1)?;
        let ttl_ms: i64 = r.try_get(2)?;
        let owned = leases
            .iter()
            .filter(|l| l.owner.as_deref() == Some(node_id.as_str()) && l.expires_in_ms >= 0)
            .count() as i64;
        nodes.push(MemberRow {
            live: age < ttl_ms,
            node_id,
            heartbeat_age_ms: age,
            slots: owned,
        });
    }
    Ok(Some(ClusterStatus {
        cluster: cluster.to_owned(),
        slots,
        nodes,
        unowned,
        leases,
    }))
}
