//! `OutboxRelay`: credits the transfers whose direct delivery did not happen
//! (the recipient's actor was busy, storage failed, the process stopped
//! between debit and credit). A `give` writes its debit and an outbox row in
//! one transaction; the credit is applied once by transfer id, so delivering
//! again is always safe, and this actor does it on a timer.
//!
//! An actix actor on the system thread with a `run_interval` timer; the
//! sweep itself runs on the main runtime while the actor waits, so sweeps
//! never overlap and a slow one delays the next tick rather than piling up.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::registry::Registry;
use crate::store::StoreError;
use crate::system::{self, ActorSystem};
use crate::telemetry as m;

/// Transfers read per sweep step.
const PAGE: usize = 512;

pub(crate) struct OutboxRelay {
    registry: Arc<Registry>,
    every: Duration,
    io: tokio::runtime::Handle,
}

impl OutboxRelay {
    pub(crate) fn start(
        system: &ActorSystem,
        registry: Arc<Registry>,
        every: Duration,
    ) -> Addr<Self> {
        let relay = Self {
            registry,
            every: every.max(Duration::from_millis(10)),
            io: system.io().clone(),
        };
        Self::start_in_arbiter(system.arbiter(), |_| relay)
    }
}

impl Actor for OutboxRelay {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.every, |act, ctx| {
            // Only transfers old enough that their direct delivery should be done.
            let before = (act.registry.shared.config.clock)() - 2 * act.every.as_millis() as i64;
            let registry = act.registry.clone();
            let sweep = async move { relay_pending(&registry, before).await };
            ctx.wait(
                system::on_main(&act.io, sweep).map(|swept, _, _| match swept {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "outbox relay could not read pending transfers")
                    }
                    None => tracing::warn!("an outbox relay sweep was lost; the next one retries"),
                }),
            );
        });
    }
}

/// Re-delivers transfers debited at or before `before_ms` and not yet
/// credited. Returns how many it credited.
pub(crate) async fn relay_pending(
    registry: &Arc<Registry>,
    before_ms: i64,
) -> Result<usize, StoreError> {
    let mut credited = 0;
    loop {
        let pending = registry
            .shared
            .store
            .pending_transfers(before_ms, PAGE as i64)
            .await?;
        let n = pending.len();
        // Cluster mode: another node's transfers are its relay's.
        let mine = pending.into_iter().filter(|t| registry.serves(t.guild));
        let results = futures::future::join_all(mine.map(|t| registry.deliver(t))).await;
        let ok = results.iter().filter(|r| r.is_ok()).count();
        credited += ok;
        metrics::counter!(m::TRANSFERS_REDELIVERED_TOTAL).increment(ok as u64);
        // Stop when drained, or when nothing moved (storage down): retry later.
        if n < PAGE || ok == 0 {
            return Ok(credited);
        }
    }
}
