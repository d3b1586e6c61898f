//! A player's in-memory state, owned by exactly one `UserActor`. Kept compact:
//! a million resident players must fit in 1 GiB.

// The collection's types are the collection feature's; named here too.
pub use crate::game::collection::owned::{Collection, Owned};

/// What the game knows about one player. Changed only by adopting a committed
/// draft, so it never runs ahead of the database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserState {
    /// Whether a row exists in storage. A player's first command creates it.
    pub exists: bool,
    pub gold: i64,
    pub gems: i64,
    pub xp: i64,
    /// UTC day (days since epoch) of the last `daily` claim.
    pub daily_day: Option<i32>,
    pub daily_streak: i32,
    pub credits: i64,
    /// Credits held by this player's queued jobs: in `credits`, but not
    /// spendable until each job is charged or released.
    pub credits_held: i64,
    /// UTC day of the last `lucky` draw, and the discount it gave for that day.
    pub lucky_day: Option<i32>,
    pub lucky_pct: u8,
    /// Generation jobs waiting or running, for the per-player limit.
    pub open_jobs: u8,
    /// Has an arena entry waiting or matched (at most one at a time).
    pub in_arena: bool,
    /// Has verified in the guild (see `game/guild/verify.rs`).
    pub verified: bool,
    /// Items owned, sorted by item id.
    pub inventory: Inventory,
    /// What is read from storage only the first time a command needs it
    /// (the collection, the roleplay characters): the many players who never
    /// summon or roleplay carry one pointer for both.
    pub on_demand: Option<Box<OnDemand>>,
}

/// The parts of a player's state read on demand (`None`: not read yet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OnDemand {
    pub collection: Option<Collection>,
    pub roleplay: Option<crate::game::roleplay::sheet::Roleplay>,
    pub allowance: Option<crate::game::generation::allowance::Allowance>,
}

impl UserState {
    /// The player's characters, pity counters and team, if read.
    pub fn collection(&self) -> Option<&Collection> {
        self.on_demand.as_ref()?.collection.as_ref()
    }

    pub fn collection_mut(&mut self) -> Option<&mut Collection> {
        self.on_demand.as_mut()?.collection.as_mut()
    }

    /// Takes the collection out, to change it and put it back.
    pub fn take_collection(&mut self) -> Option<Collection> {
        self.on_demand.as_mut()?.collection.take()
    }

    pub fn set_collection(&mut self, c: Collection) {
        self.on_demand.get_or_insert_default().collection = Some(c);
    }

    /// The player's roleplay characters and day, if read.
    pub fn roleplay(&self) -> Option<&crate::game::roleplay::sheet::Roleplay> {
        self.on_demand.as_ref()?.roleplay.as_ref()
    }

    pub fn roleplay_mut(&mut self) -> Option<&mut crate::game::roleplay::sheet::Roleplay> {
        self.on_demand.as_mut()?.roleplay.as_mut()
    }

    pub fn set_roleplay(&mut self, r: crate::game::roleplay::sheet::Roleplay) {
        self.on_demand.get_or_insert_default().roleplay = Some(r);
    }

    /// The player's free jobs and VIP, if read.
    pub fn allowance(&self) -> Option<&crate::game::generation::allowance::Allowance> {
        self.on_demand.as_ref()?.allowance.as_ref()
    }

    pub fn set_allowance(&mut self, a: crate::game::generation::allowance::Allowance) {
        self.on_demand.get_or_insert_default().allowance = Some(a);
    }

    /// The level is derived from XP, not stored beside it: one less field in
    /// every resident actor, and the two can never disagree.
    /// Credits the player may spend now: the balance less what their
    /// queued jobs hold.
    pub fn credits_available(&self) -> i64 {
        self.credits.saturating_sub(self.credits_held).max(0)
    }

    pub fn level(&self) -> i32 {
        crate::domain::level::level_for_xp(self.xp)
    }

    pub fn owned(&self, item: &str) -> i64 {
        self.inventory
            .iter()
            .find(|(id, _)| &**id == item)
            .map_or(0, |(_, n)| *n)
    }

    pub fn set_owned(&mut self, item: &str, quantity: i64) {
        let items = self.inventory.0.get_or_insert_with(Box::default);
        match (items.binary_search_by(|(id, _)| (**id).cmp(item)), quantity) {
            (Ok(i), 0) => {
                items.remove(i);
            }
            (Ok(i), q) => items[i].1 = q,
            (Err(_), 0) => {}
            (Err(i), q) => items.insert(i, (item.into(), q)),
        }
        if items.is_empty() {
            self.inventory.0 = None;
        }
    }
}

/// Items owned, sorted by item id: small, so a sorted list beats a map,
/// and behind one thin pointer (none for the many players who own
/// nothing), so every resident actor carries 8 bytes for it.
// The box is the point: a thin 8-byte pointer where a vector is 24 bytes.
#[allow(clippy::box_collection)]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory(Option<Box<Vec<ItemCount>>>);

/// An item id and how many of it a player owns.
pub type ItemCount = (Box<str>, i64);

impl Inventory {
    /// From items sorted by id.
    pub fn from_sorted(items: Vec<ItemCount>) -> Self {
        Self((!items.is_empty()).then(|| Box::new(items)))
    }
}

impl std::ops::Deref for Inventory {
    type Target = [ItemCount];

    fn deref(&self) -> &Self::Target {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }
}

/// Remembers the fingerprints of the last commands a player's actor committed,
/// so a retry is recognised without a database read. When a player has more
/// ids on record than fit here, a miss must be checked in storage.
#[derive(Debug, Clone, Default)]
pub struct RecentCommands {
    fingerprints: Vec<u64>,
    /// Index of the slot to overwrite next; u8 keeps every resident actor small.
    next: u8,
    /// Storage may hold ids for this player that are not in `fingerprints`.
    pub incomplete: bool,
}

impl RecentCommands {
    pub const CAPACITY: usize = 32;

    pub fn from_loaded(fingerprints: Vec<u64>, incomplete: bool) -> Self {
        let next = (fingerprints.len() % Self::CAPACITY) as u8;
        Self {
            fingerprints,
            next,
            incomplete,
        }
    }

    pub fn contains(&self, fp: u64) -> bool {
        self.fingerprints.contains(&fp)
    }

    pub fn remember(&mut self, fp: u64) {
        if self.fingerprints.len() < Self::CAPACITY {
            self.fingerprints.push(fp);
        } else {
            self.fingerprints[usize::from(self.next)] = fp;
            self.incomplete = true;
        }
        self.next = ((usize::from(self.next) + 1) % Self::CAPACITY) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_stays_sorted_and_drops_zeroes() {
        let mut s = UserState::default();
        s.set_owned("potion", 2);
        s.set_owned("bait", 5);
        s.set_owned("rod", 1);
        assert_eq!(
            s.inventory.iter().map(|(i, _)| &**i).collect::<Vec<_>>(),
            ["bait", "potion", "rod"]
        );
        s.set_owned("potion", 0);
        assert_eq!(s.owned("potion"), 0);
        assert_eq!(s.owned("bait"), 5);
        assert_eq!(s.inventory.len(), 2);
    }

    #[test]
    fn recent_commands_forget_the_oldest_and_say_so() {
        let mut r = RecentCommands::default();
        for fp in 0..RecentCommands::CAPACITY as u64 {
            r.remember(fp);
        }
        assert!(r.contains(0) && !r.incomplete);
        r.remember(1000);
        assert!(!r.contains(0) && r.contains(1000) && r.incomplete);
    }
}
