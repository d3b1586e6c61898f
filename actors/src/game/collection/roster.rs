//! The roster: characters, banners, what duplicates turn into and what a
//! level costs. Data operators tune, loaded from a TOML file (shipped:
//! `assets/characters.toml`) and checked whole at start: a bad file is
//! refused with `file:line: message`.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use toml::Spanned;

use crate::game::data_file::{DataFileError, Pointer};

/// The roster shipped with kokoro.
pub const SHIPPED: &str = include_str!("../../../../assets/characters.toml");

/// Longest character name accepted.
pub const MAX_NAME_CHARS: usize = 32;
/// Longest banner id accepted.
pub const MAX_BANNER_ID: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rarity {
    C,
    R,
    SR,
    SSR,
}

impl Rarity {
    /// Commonest first: the order rates are listed and rolled in.
    pub const ALL: [Rarity; 4] = [Rarity::C, Rarity::R, Rarity::SR, Rarity::SSR];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::C => "C",
            Self::R => "R",
            Self::SR => "SR",
            Self::SSR => "SSR",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Character {
    pub name: String,
    pub rarity: Rarity,
    /// Power at level 1.
    pub power: i64,
    pub image: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Banner {
    pub id: String,
    pub name: String,
    /// Gems for one summon, and for ten at once (charged once).
    pub cost: i64,
    pub ten_cost: i64,
    /// Summons without an SSR after which the next one is an SSR.
    pub pity: u32,
    /// Percent per rarity, indexed by `Rarity::index`; sums to 100.
    pub rates: [f64; 4],
    /// Indices into the roster's characters, per rarity.
    pub pool: [Vec<usize>; 4],
}

/// What raising a character a level costs, and what it gives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Upgrade {
    pub max_level: u32,
    /// Shards per level: going from level L to L+1 costs `shards × L`.
    pub shards: i64,
    /// Gold per level, likewise.
    pub gold: i64,
    /// Each level above 1 adds this percent of the base power.
    pub power_percent: i64,
}

#[derive(Debug, Clone, Default)]
pub struct Roster {
    characters: Vec<Character>,
    by_name: HashMap<String, usize>,
    banners: Vec<Banner>,
    /// Shards a duplicate of each rarity turns into.
    pub duplicate_shards: [i64; 4],
    pub upgrade: Upgrade,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    duplicates: Spanned<BTreeMap<String, Spanned<i64>>>,
    upgrade: Spanned<RawUpgrade>,
    #[serde(default)]
    banner: Vec<Spanned<RawBanner>>,
    #[serde(default)]
    character: Vec<Spanned<RawCharacter>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpgrade {
    max_level: Spanned<i64>,
    shards: Spanned<i64>,
    gold: Spanned<i64>,
    power_percent: Spanned<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBanner {
    id: Spanned<String>,
    name: Spanned<String>,
    cost: Spanned<i64>,
    ten_cost: Spanned<i64>,
    #[serde(default = "default_pity")]
    pity: Spanned<i64>,
    rates: Spanned<BTreeMap<String, Spanned<f64>>>,
    characters: Spanned<Vec<Spanned<String>>>,
}

fn default_pity() -> Spanned<i64> {
    Spanned::new(0..0, 90)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCharacter {
    name: Spanned<String>,
    rarity: Spanned<String>,
    power: Spanned<i64>,
    image: Option<Spanned<String>>,
}

/// The case-insensitive key names are unique under.
pub fn name_key(name: &str) -> String {
    name.to_lowercase()
}

impl Roster {
    /// Parses and checks a roster; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, DataFileError> {
        let at = Pointer { file, text };
        let raw: Raw = toml::from_str(text).map_err(|e| at.toml(&e))?;

        let mut characters = Vec::with_capacity(raw.character.len());
        let mut by_name = HashMap::new();
        for c in &raw.character {
            let c = c.get_ref();
            let name = c.name.get_ref().trim();
            let chars = name.chars().count();
            if chars == 0 || chars > MAX_NAME_CHARS || name.chars().any(char::is_control) {
                return Err(at.at(
                    c.name.span().start,
                    format!(
                        "a character's name must be 1 to {MAX_NAME_CHARS} printable characters"
                    ),
                ));
            }
            if by_name.insert(name_key(name), characters.len()).is_some() {
                return Err(at.at(
                    c.name.span().start,
                    format!("character {name:?} is listed twice (names are unique ignoring case)"),
                ));
            }
            let rarity = Rarity::parse(c.rarity.get_ref())
                .ok_or_else(|| at.at(c.rarity.span().start, "rarity must be C, R, SR or SSR"))?;
            let power = *c.power.get_ref();
            if !(1..=10_000).contains(&power) {
                return Err(at.at(c.power.span().start, "power must be 1 to 10000"));
            }
            let image = match &c.image {
                None => None,
                Some(url) => {
                    let u = url.get_ref();
                    if !u.starts_with("https://")
                        || u.len() > 500
                        || u.chars().any(char::is_whitespace)
                    {
                        return Err(at.at(
                            url.span().start,
                            "image must be an https:// URL without spaces",
                        ));
                    }
                    Some(u.clone())
                }
            };
            characters.push(Character {
                name: name.to_owned(),
                rarity,
                power,
                image,
            });
        }
        if characters.is_empty() {
            return Err(at.at(0, "the roster needs at least one [[character]]"));
        }

        let mut banners: Vec<Banner> = Vec::with_capacity(raw.banner.len());
        for b in &raw.banner {
            let b = b.get_ref();
            let id = b.id.get_ref();
            if id.is_empty()
                || id.len() > MAX_BANNER_ID
                || !id
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
            {
                return Err(at.at(
                    b.id.span().start,
                    format!("a banner id must be 1 to {MAX_BANNER_ID} of a-z, 0-9, '_'"),
                ));
            }
            if banners.iter().any(|o| &o.id == id) {
                return Err(at.at(b.id.span().start, format!("banner {id:?} is listed twice")));
            }
            if b.name.get_ref().trim().is_empty() {
                return Err(at.at(b.name.span().start, "a banner needs a name"));
            }
            for (cost, what) in [(&b.cost, "cost"), (&b.ten_cost, "ten_cost")] {
                if !(1..=crate::domain::money::MAX_AMOUNT).contains(cost.get_ref()) {
                    return Err(at.at(
                        cost.span().start,
                        format!("{what} must be a positive number of gems"),
                    ));
                }
            }
            let pity = u32::try_from(*b.pity.get_ref())
                .ok()
                .filter(|p| (1..=1000).contains(p))
                .ok_or_else(|| at.at(b.pity.span().start, "pity must be 1 to 1000"))?;
            let mut rates = [0.0; 4];
            for (key, rate) in b.rates.get_ref() {
                let r = Rarity::parse(key).ok_or_else(|| {
                    at.at(
                        rate.span().start,
                        format!("unknown rarity {key:?} in rates; use C, R, SR, SSR"),
                    )
                })?;
                let v = *rate.get_ref();
                if !(0.0..=100.0).contains(&v) {
                    return Err(at.at(rate.span().start, "a rate is a percent from 0 to 100"));
                }
                rates[r.index()] = v;
            }
            let sum: f64 = rates.iter().sum();
            if (sum - 100.0).abs() > 1e-6 {
                return Err(at.at(
                    b.rates.span().start,
                    format!("rates must sum to 100, not {sum}"),
                ));
            }
            let mut pool: [Vec<usize>; 4] = Default::default();
            for name in b.characters.get_ref() {
                let Some(&i) = by_name.get(&name_key(name.get_ref().trim())) else {
                    return Err(at.at(
                        name.span().start,
                        format!("no character {:?} in the roster", name.get_ref()),
                    ));
                };
                let r = characters[i].rarity;
                if pool[r.index()].contains(&i) {
                    return Err(at.at(
                        name.span().start,
                        format!("{:?} is on this banner twice", name.get_ref()),
                    ));
                }
                // An SSR at rate 0 still comes, by pity.
                if rates[r.index()] == 0.0 && r != Rarity::SSR {
                    return Err(at.at(
                        name.span().start,
                        format!(
                            "{:?} can never be summoned here: the {} rate is 0",
                            name.get_ref(),
                            r.as_str()
                        ),
                    ));
                }
                pool[r.index()].push(i);
            }
            if pool[Rarity::SSR.index()].is_empty() {
                return Err(at.at(
                    b.characters.span().start,
                    "a banner needs at least one SSR character: pity guarantees one",
                ));
            }
            for r in Rarity::ALL {
                if rates[r.index()] > 0.0 && pool[r.index()].is_empty() {
                    return Err(at.at(
                        b.characters.span().start,
                        format!(
                            "the {} rate is above 0 but no {} character is on this banner",
                            r.as_str(),
                            r.as_str()
                        ),
                    ));
                }
            }
            banners.push(Banner {
                id: id.clone(),
                name: b.name.get_ref().trim().to_owned(),
                cost: *b.cost.get_ref(),
                ten_cost: *b.ten_cost.get_ref(),
                pity,
                rates,
                pool,
            });
        }
        if banners.is_empty() {
            return Err(at.at(0, "the roster needs at least one [[banner]]"));
        }

        let mut duplicate_shards = [0; 4];
        for (key, n) in raw.duplicates.get_ref() {
            let r = Rarity::parse(key).ok_or_else(|| {
                at.at(
                    n.span().start,
                    format!("unknown rarity {key:?} in duplicates; use C, R, SR, SSR"),
                )
            })?;
            if !(0..=1_000_000).contains(n.get_ref()) {
                return Err(at.at(n.span().start, "shards per duplicate must be 0 to 1000000"));
            }
            duplicate_shards[r.index()] = *n.get_ref();
        }

        let u = raw.upgrade.get_ref();
        let max_level = u32::try_from(*u.max_level.get_ref())
            .ok()
            .filter(|l| (1..=100).contains(l))
            .ok_or_else(|| at.at(u.max_level.span().start, "max_level must be 1 to 100"))?;
        for (v, what) in [(&u.shards, "shards"), (&u.gold, "gold")] {
            if !(0..=1_000_000_000).contains(v.get_ref()) {
                return Err(at.at(
                    v.span().start,
                    format!("{what} per level must be 0 to 10^9"),
                ));
            }
        }
        if !(0..=1000).contains(u.power_percent.get_ref()) {
            return Err(at.at(
                u.power_percent.span().start,
                "power_percent must be 0 to 1000",
            ));
        }
        Ok(Self {
            characters,
            by_name,
            banners,
            duplicate_shards,
            upgrade: Upgrade {
                max_level,
                shards: *u.shards.get_ref(),
                gold: *u.gold.get_ref(),
                power_percent: *u.power_percent.get_ref(),
            },
        })
    }

    /// The shipped roster (a unit test keeps it valid).
    pub fn shipped() -> Result<Self, DataFileError> {
        Self::parse(SHIPPED, "assets/characters.toml")
    }

    pub fn characters(&self) -> &[Character] {
        &self.characters
    }

    pub fn character(&self, index: usize) -> Option<&Character> {
        self.characters.get(index)
    }

    /// A character by name, ignoring case.
    pub fn find(&self, name: &str) -> Option<(usize, &Character)> {
        let i = *self.by_name.get(&name_key(name.trim()))?;
        Some((i, &self.characters[i]))
    }

    pub fn banners(&self) -> &[Banner] {
        &self.banners
    }

    pub fn banner(&self, id: &str) -> Option<&Banner> {
        self.banners.iter().find(|b| b.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_roster_has_forty_characters_of_every_rarity_and_two_banners() {
        let r = Roster::shipped().expect("the shipped roster parses");
        assert!(r.characters().len() >= 40, "{}", r.characters().len());
        for rarity in Rarity::ALL {
            assert!(
                r.characters().iter().any(|c| c.rarity == rarity),
                "{rarity:?}"
            );
        }
        assert_eq!(r.banners().len(), 2);
        let standard = r.banner("standard").unwrap();
        assert_eq!(standard.pity, 90);
        assert_eq!(
            standard.pool.iter().map(Vec::len).sum::<usize>(),
            r.characters().len(),
            "every character can be summoned on the standard banner"
        );
        assert_eq!(
            r.find("solenne ASHCROWN").map(|(_, c)| c.rarity),
            Some(Rarity::SSR)
        );
    }

    /// The shipped file with its first `from` replaced by `to`: the error,
    /// which must point at the line of `to` that holds `at`.
    fn broken(from: &str, to: &str, at: &str) -> DataFileError {
        let offset = SHIPPED.find(from).unwrap_or_else(|| panic!("{from}"));
        let text = SHIPPED.replacen(from, to, 1);
        let err = Roster::parse(&text, "chars.toml").unwrap_err();
        let want = crate::game::data_file::line_of(&text, offset + to.find(at).unwrap());
        assert_eq!((err.file.as_str(), err.line), ("chars.toml", want), "{err}");
        err
    }

    fn line_with(text: &str, needle: &str) -> usize {
        crate::game::data_file::line_of(text, text.find(needle).unwrap())
    }

    #[test]
    fn a_bad_file_is_refused_with_its_file_and_line() {
        let cases = [
            (
                "rarity = \"SSR\"\npower = 120",
                "rarity = \"UR\"\npower = 120",
                "UR",
                "rarity",
            ),
            ("power = 115", "power = -5", "-5", "power"),
            (
                "name = \"Kaito Emberwake\"",
                "name = \"solenne ashcrown\"",
                "solenne",
                "twice",
            ),
            (
                "\"Ryuen Frostvale\",\n  \"Tamsin",
                "\"Ryuen Frostvalley\",\n  \"Tamsin",
                "Frostvalley",
                "no character",
            ),
            ("pity = 70", "pity = 0", "0", "pity"),
            ("ten_cost = 72", "ten_cost = -1", "-1", "ten_cost"),
            (
                "SR = 12.0, SSR = 3.0",
                "SR = 12.0, SSR = 4.0",
                "SR",
                "sum to 100",
            ),
            (
                "SR = 12.0, SSR = 3.0",
                "SR = 12.0, UR = 3.0",
                "3.0",
                "unknown rarity",
            ),
            (
                "id = \"starfall\"",
                "id = \"Star Fall\"",
                "Star",
                "banner id",
            ),
            (
                "id = \"starfall\"",
                "id = \"standard\"",
                "standard",
                "twice",
            ),
            (
                "power = 112",
                "power = 112\nimage = \"http://example.com/a.png\"",
                "http",
                "https",
            ),
            ("max_level = 10", "max_level = 0", "0", "max_level"),
        ];
        for (from, to, at, says) in cases {
            let err = broken(from, to, at);
            assert!(err.message.contains(says), "{to:?}: {err}");
        }
    }

    #[test]
    fn unknown_fields_and_bad_toml_name_their_line() {
        let text = SHIPPED.replacen("cost = 5\n", "cost = 5\ncolour = \"red\"\n", 1);
        let err = Roster::parse(&text, "c.toml").unwrap_err();
        assert_eq!(err.line, line_with(&text, "colour"), "{err}");
        let err = Roster::parse("[[character]\nname = 1", "c.toml").unwrap_err();
        assert_eq!(err.line, 1, "{err}");
    }
}
