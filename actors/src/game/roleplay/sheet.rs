//! A player's roleplay sheet: the characters they keep and the day their
//! counters belong to. Data only, so that the player's state and the write
//! set can hold it without reaching up into the roleplay rules.

use chrono::NaiveDate;
use chrono_tz::Tz;

/// A player's roleplay characters and the day their counters belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roleplay {
    /// In the order they were created.
    pub characters: Vec<RpCharacter>,
    /// The id of the character that earns from the player's posts.
    pub active: Option<i64>,
    pub timezone: Tz,
    /// The local day the daily counters were last reset (`None`: never).
    pub last_xp_reset: Option<NaiveDate>,
}

impl Default for Roleplay {
    fn default() -> Self {
        Self {
            characters: Vec::new(),
            active: None,
            timezone: Tz::UTC,
            last_xp_reset: None,
        }
    }
}

/// One roleplay character, as stored (absolute values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpCharacter {
    pub id: i64,
    pub name: String,
    pub xp: i64,
    /// XP from roleplay channels on the counting day.
    pub daily_xp: i64,
    /// XP from hf posts and successes on the counting day.
    pub daily_hf: i64,
    /// Characters written towards the next XP point.
    pub char_buffer: i64,
    pub image_url: Option<String>,
    pub created_ms: i64,
}

impl Roleplay {
    /// The character called `name`, ignoring case.
    pub fn find(&self, name: &str) -> Option<usize> {
        let key = name_key(name);
        self.characters
            .iter()
            .position(|c| name_key(&c.name) == key)
    }

    pub fn active(&self) -> Option<usize> {
        let id = self.active?;
        self.characters.iter().position(|c| c.id == id)
    }
}

/// What makes two names the same name.
pub fn name_key(name: &str) -> String {
    name.to_lowercase()
}
