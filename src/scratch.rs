//! A throw-away database for benchmarks and in-process load tests: SQLite in
//! a temporary directory, or a fresh database on a PostgreSQL server, dropped
//! afterwards. Never the operator's own data.

use actors::store::{Store, StoreOptions};
use anyhow::Context;
use sqlx::{Connection, Executor};

/// A fresh database, removed on `cleanup`.
pub struct Scratch {
    url: Option<String>,
    dir: tempfile::TempDir,
    admin: Option<String>,
    name: Option<String>,
}

impl Scratch {
    pub async fn new(admin: Option<&str>) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let Some(admin) = admin else {
            return Ok(Self {
                url: None,
                dir,
                admin: None,
                name: None,
            });
        };
        let name = format!("kokoro_bench_{}", rand::random::<u32>());
        let mut conn = sqlx::PgConnection::connect(admin)
            .await
            .context("connecting to PostgreSQL")?;
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await?;
        let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
        Ok(Self {
            url: Some(format!("{base}/{name}")),
            dir,
            admin: Some(admin.to_owned()),
            name: Some(name),
        })
    }

    pub async fn store(&self, opts: &StoreOptions) -> anyhow::Result<Store> {
        Ok(Store::open(self.url.as_deref(), self.dir.path(), opts).await?)
    }

    pub async fn cleanup(self) {
        if let (Some(admin), Some(name)) = (&self.admin, &self.name) {
            if let Ok(mut conn) = sqlx::PgConnection::connect(admin).await {
                let _ = conn
                    .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                    .await;
            }
        }
    }
}
