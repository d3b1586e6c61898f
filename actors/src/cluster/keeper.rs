//! The lease keeper: one task per node that heartbeats, renews what the
//! node holds, takes its share of free or expired slots, and hands over
//! what it holds beyond its share. Each node aims at `slots / live nodes`
//! (rounded up); the database's row locks decide who gets a slot.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{leases, Cluster};
use crate::telemetry as m;

/// The longest a handover waits for the slot's commits in flight.
const DRAIN_PATIENCE: Duration = Duration::from_secs(2);

impl Cluster {
    /// How often the keeper looks: a third of the TTL (renewal), at most a
    /// second (so a dead node's slots are taken soon after they expire).
    fn tick_every(&self) -> Duration {
        (self.config.lease_ttl / 3).min(Duration::from_secs(1))
    }

    /// Until when, by this node's clock, a lease renewed at `sent` is
    /// surely still this node's: the database set its expiry after `sent`,
    /// so `sent + ttl` is before it; a tenth of the TTL more is kept for
    /// clocks that run at slightly different rates.
    fn serve_until(&self, sent: Instant) -> u64 {
        let ttl = self.config.lease_ttl;
        let sent_ms = sent.saturating_duration_since(self.started).as_millis() as u64;
        sent_ms + (ttl - ttl / 10).as_millis() as u64
    }

    pub(super) async fn keep(self: std::sync::Arc<Self>) {
        let mut every = tokio::time::interval(self.tick_every());
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        loop {
            every.tick().await;
            if self.leaving.load(Ordering::Acquire) {
                return;
            }
            self.tick().await;
        }
    }

    /// One look: heartbeat and renew, then take or hand over toward this
    /// node's share.
    pub(super) async fn tick(&self) {
        let sent = Instant::now();
        let held: Vec<i32> = (0..self.config.slots)
            .filter(|s| self.slots[*s as usize].epoch.load(Ordering::Acquire) > 0)
            .map(|s| s as i32)
            .collect();
        let renewed = match leases::renew(&self.pool, &self.config, &held).await {
            Ok(r) => r,
            Err(e) => {
                metrics::counter!(m::CLUSTER_LEASE_FAILURES_TOTAL).increment(1);
                tracing::warn!(error = %e, held = held.len(), "lease renewal failed; slots stop being served when their leases could run out");
                return;
            }
        };
        metrics::histogram!(m::CLUSTER_LEASE_RENEWAL_SECONDS).record(sent.elapsed().as_secs_f64());
        let until = self.serve_until(sent);
        let mut changed = false;
        let kept: std::collections::HashMap<i32, i64> = renewed.into_iter().collect();
        for slot in &held {
            let l = &self.slots[*slot as usize];
            match kept.get(slot) {
                Some(epoch) if *epoch == l.epoch.load(Ordering::Acquire) => {
                    l.until_ms.store(until, Ordering::Release);
                }
                _ => {
                    // Taken by another node while this one could not renew
                    // (a pause, a partition): whatever it still has in
                    // flight for the slot is fenced.
                    tracing::warn!(slot, "lost the lease of a slot to another node");
                    self.forget(*slot as u32);
                    changed = true;
                }
            }
        }
        let live = match leases::live_members(&self.pool, &self.config).await {
            Ok(n) => n.max(1),
            Err(e) => {
                metrics::counter!(m::CLUSTER_LEASE_FAILURES_TOTAL).increment(1);
                tracing::warn!(error = %e, "could not count the cluster's nodes");
                if changed {
                    self.announce();
                }
                return;
            }
        };
        let share = self.config.slots.div_ceil(live);
        let mine: Vec<u32> = (0..self.config.slots)
            .filter(|s| {
                let l = &self.slots[*s as usize];
                l.epoch.load(Ordering::Acquire) > 0 && !l.draining.load(Ordering::Acquire)
            })
            .collect();
        let have = mine.len() as u32;
        if have < share && !self.leaving.load(Ordering::Acquire) {
            match leases::take(&self.pool, &self.config, share - have).await {
                Ok(taken) => {
                    let until = self.serve_until(sent);
                    for (slot, epoch, from) in &taken {
                        let Some(l) = self.slots.get(*slot as usize) else {
                            continue;
                        };
                        l.draining.store(false, Ordering::Release);
                        l.until_ms.store(until, Ordering::Release);
                        l.epoch.store(*epoch, Ordering::Release);
                        if from.is_some() {
                            metrics::counter!(m::CLUSTER_TAKEOVERS_TOTAL).increment(1);
                        }
                    }
                    if !taken.is_empty() {
                        tracing::info!(
                            slots = taken.len(),
                            taken_over = taken.iter().filter(|t| t.2.is_some()).count(),
                            share,
                            nodes = live,
                            "took slots"
                        );
                        changed = true;
                    }
                }
                Err(e) => {
                    metrics::counter!(m::CLUSTER_LEASE_FAILURES_TOTAL).increment(1);
                    tracing::warn!(error = %e, "could not take free slots");
                }
            }
        } else if have > share {
            // The newest nodes' share: the highest slots go first.
            let extra: Vec<u32> = mine[share as usize..].to_vec();
            tracing::info!(
                slots = extra.len(),
                share,
                nodes = live,
                "handing slots over to rebalance"
            );
            self.hand_over(&extra).await;
            changed = false;
        }
        if changed {
            self.announce();
        }
    }

    /// Stops taking commands for `slots`, lets the commits in flight finish
    /// (bounded), then frees their leases for another node.
    pub(super) async fn hand_over(&self, slots: &[u32]) {
        if slots.is_empty() {
            return;
        }
        for s in slots {
            self.slots[*s as usize]
                .draining
                .store(true, Ordering::Release);
        }
        self.announce();
        let deadline = Instant::now() + DRAIN_PATIENCE.min(self.config.lease_ttl / 3);
        while Instant::now() < deadline
            && slots
                .iter()
                .any(|s| self.slots[*s as usize].in_flight.load(Ordering::Acquire) > 0)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let ids: Vec<i32> = slots.iter().map(|s| *s as i32).collect();
        // Forgotten first: a WriteSet decided after the drain is fenced
        // here, before it could reach a lease another node may hold next.
        for s in slots {
            self.forget(*s);
        }
        if let Err(e) = leases::release(&self.pool, &self.config, &ids).await {
            metrics::counter!(m::CLUSTER_LEASE_FAILURES_TOTAL).increment(1);
            tracing::warn!(error = %e, slots = ids.len(), "could not free handed-over leases; they run out instead");
        }
        self.announce();
    }

    /// This node no longer holds `slot`.
    fn forget(&self, slot: u32) {
        if let Some(l) = self.slots.get(slot as usize) {
            l.epoch.store(0, Ordering::Release);
            l.until_ms.store(0, Ordering::Release);
            l.draining.store(false, Ordering::Release);
        }
    }
}
