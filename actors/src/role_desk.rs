//! `RoleDesk`: the role changes players' actors decide, waiting for a front
//! door (Discord) to apply them. An actor posts a member's change once its
//! commit is durable, in the order of its commits; the front door takes
//! each guild's changes one member at a time, in the order they came.
//!
//! Changes for a member still waiting are folded into one (`RoleChange::
//! then`), so what waits is bounded by members × rules, however fast
//! members' states change and however slowly Discord lets roles change.
//! With no front door attached, nothing is kept.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::mpsc;

use crate::game::guild::role_rules::RoleChange;
use crate::ids::{GuildId, UserId, UserKey};
use crate::telemetry as m;

#[derive(Default)]
struct GuildQueue {
    /// Members in the order their first waiting change came.
    order: VecDeque<UserId>,
    changes: HashMap<UserId, RoleChange>,
    /// A front door task is taking this guild's changes.
    served: bool,
}

pub struct RoleDesk {
    attached: AtomicBool,
    guilds: Mutex<HashMap<GuildId, GuildQueue>>,
    /// Guilds that have changes and no task taking them.
    wake: mpsc::UnboundedSender<GuildId>,
    woken: tokio::sync::Mutex<mpsc::UnboundedReceiver<GuildId>>,
}

impl Default for RoleDesk {
    fn default() -> Self {
        let (wake, woken) = mpsc::unbounded_channel();
        Self {
            attached: AtomicBool::new(false),
            guilds: Mutex::default(),
            wake,
            woken: tokio::sync::Mutex::new(woken),
        }
    }
}

impl RoleDesk {
    /// Only moves entries between maps: a poisoned lock is still sound.
    fn guilds(&self) -> MutexGuard<'_, HashMap<GuildId, GuildQueue>> {
        self.guilds.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A front door will apply changes from now on.
    pub fn attach(&self) {
        self.attached.store(true, Ordering::Release);
    }

    pub fn attached(&self) -> bool {
        self.attached.load(Ordering::Acquire)
    }

    /// A member's change, after what is waiting for them.
    pub fn post(&self, key: UserKey, change: &RoleChange) {
        if change.is_empty() || !self.attached() {
            return;
        }
        let mut guilds = self.guilds();
        let q = guilds.entry(key.guild).or_default();
        match q.changes.get_mut(&key.user) {
            Some(waiting) => waiting.then(change),
            None => {
                q.changes.insert(key.user, change.clone());
                q.order.push_back(key.user);
                metrics::gauge!(m::ROLE_CHANGES_WAITING).increment(1.0);
            }
        }
        if !q.served {
            q.served = true;
            // The receiver lives as long as the desk.
            let _ = self.wake.send(key.guild);
        }
    }

    /// The next guild with changes and no task taking them; a front door
    /// starts one task per guild it hears of here. `None` never comes
    /// while the desk lives.
    pub async fn next_guild(&self) -> Option<GuildId> {
        self.woken.lock().await.recv().await
    }

    /// The guild's next member and their change; `None` when none waits,
    /// and the guild's task is then done (a later change wakes a new one).
    pub fn take(&self, guild: GuildId) -> Option<(UserId, RoleChange)> {
        let mut guilds = self.guilds();
        let q = guilds.get_mut(&guild)?;
        while let Some(user) = q.order.pop_front() {
            if let Some(change) = q.changes.remove(&user) {
                metrics::gauge!(m::ROLE_CHANGES_WAITING).decrement(1.0);
                return Some((user, change));
            }
        }
        guilds.remove(&guild);
        None
    }

    /// Members with a change waiting, in every guild.
    pub fn waiting(&self) -> usize {
        self.guilds().values().map(|q| q.changes.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(g: i64, u: i64) -> UserKey {
        UserKey::new(GuildId::new(g).unwrap(), UserId::new(u).unwrap())
    }

    fn change(add: &[u64], remove: &[u64]) -> RoleChange {
        RoleChange {
            add: add.to_vec(),
            remove: remove.to_vec(),
        }
    }

    #[tokio::test]
    async fn a_members_waiting_changes_fold_and_guilds_wake_once() {
        let desk = RoleDesk::default();
        desk.post(key(1, 5), &change(&[7], &[]));
        assert_eq!(desk.waiting(), 0, "nothing is kept with no front door");
        desk.attach();
        desk.post(key(1, 5), &change(&[7], &[]));
        desk.post(key(1, 6), &change(&[8], &[]));
        desk.post(key(1, 5), &change(&[], &[7]));
        desk.post(key(2, 5), &change(&[9], &[]));
        assert_eq!(desk.next_guild().await, GuildId::new(1).ok());
        assert_eq!(desk.next_guild().await, GuildId::new(2).ok());
        let g1 = GuildId::new(1).unwrap();
        let (u, c) = desk.take(g1).unwrap();
        assert_eq!((u.get(), c), (5, change(&[], &[7])));
        assert_eq!(desk.take(g1).unwrap().0.get(), 6);
        assert!(desk.take(g1).is_none());
        // The guild's task ended: its next change wakes it again.
        desk.post(key(1, 6), &change(&[], &[8]));
        assert_eq!(desk.next_guild().await, Some(g1));
        assert_eq!(desk.waiting(), 2);
    }
}
