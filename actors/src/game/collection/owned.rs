//! What a player has collected: characters with their levels and shards,
//! pity counters per banner, and the team. Read on demand (see `state.rs`).

/// What a player has collected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collection {
    /// Owned characters, sorted by name.
    pub owned: Vec<Owned>,
    /// Per banner id: summons since the last SSR, and summons in all.
    pub pity: Vec<(Box<str>, u32, u64)>,
    /// Up to three owned characters' names, in order.
    pub team: Vec<Box<str>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    pub name: Box<str>,
    pub level: u32,
    /// Shards of this character, from duplicates, spent on levels.
    pub shards: i64,
    /// Copies summoned in all (the first and every duplicate).
    pub copies: i64,
}

impl Collection {
    pub fn owned(&self, name: &str) -> Option<&Owned> {
        self.owned
            .binary_search_by(|o| (*o.name).cmp(name))
            .ok()
            .map(|i| &self.owned[i])
    }

    /// Puts `owned` in place of the character of the same name, or adds it.
    pub fn set(&mut self, owned: Owned) {
        match self.owned.binary_search_by(|o| o.name.cmp(&owned.name)) {
            Ok(i) => self.owned[i] = owned,
            Err(i) => self.owned.insert(i, owned),
        }
    }

    /// Summons on `banner` since the last SSR, and in all.
    pub fn pity(&self, banner: &str) -> (u32, u64) {
        self.pity
            .iter()
            .find(|(b, _, _)| &**b == banner)
            .map_or((0, 0), |(_, since, all)| (*since, *all))
    }

    pub fn set_pity(&mut self, banner: &str, since_ssr: u32, summons: u64) {
        match self.pity.iter_mut().find(|(b, _, _)| &**b == banner) {
            Some(p) => (p.1, p.2) = (since_ssr, summons),
            None => self.pity.push((banner.into(), since_ssr, summons)),
        }
    }
}
