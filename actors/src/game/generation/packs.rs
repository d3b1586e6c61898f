//! Credit packs sold for Telegram Stars, as data (`assets/packs.toml`,
//! replaced by `--packs-file`): an id, a title, the price in Stars and the
//! credits bought. Checked at start; a bad file is refused with
//! `file:line: message`.

use serde::Deserialize;
use toml::Spanned;

use crate::game::data_file::{DataFileError, Pointer};
use crate::game::generation::credits::MAX_CREDITS;

pub const SHIPPED: &str = include_str!("../../../../assets/packs.toml");

/// The most Stars one invoice may ask (Telegram's limit per payment).
pub const MAX_STARS: i64 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pack {
    pub id: String,
    /// 1 to 32 characters: Telegram's limit for an invoice's title.
    pub title: String,
    pub stars: i64,
    pub credits: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Packs {
    packs: Vec<Pack>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    pack: Vec<Spanned<RawPack>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPack {
    id: String,
    title: String,
    stars: i64,
    credits: i64,
}

impl Packs {
    pub fn shipped() -> Self {
        Self::parse(SHIPPED, "assets/packs.toml").unwrap_or_default()
    }

    pub fn parse(text: &str, file: &str) -> Result<Self, DataFileError> {
        let at = Pointer { file, text };
        let raw: Raw = toml::from_str(text).map_err(|e| at.toml(&e))?;
        let mut packs: Vec<Pack> = Vec::new();
        for p in &raw.pack {
            let pos = p.span().start;
            let r = p.get_ref();
            if !super::workflow::valid_id(&r.id) {
                return Err(at.at(pos, "id must be 1 to 32 lowercase letters, digits, _ or -"));
            }
            if packs.iter().any(|o| o.id == r.id) {
                return Err(at.at(pos, format!("duplicate pack {:?}", r.id)));
            }
            let title = r.title.trim();
            if title.is_empty() || title.chars().count() > 32 {
                return Err(at.at(pos, "title must be 1 to 32 characters (Telegram's limit)"));
            }
            if !(1..=MAX_STARS).contains(&r.stars) {
                return Err(at.at(pos, format!("stars must be 1 to {MAX_STARS}")));
            }
            if !(1..=MAX_CREDITS).contains(&r.credits) {
                return Err(at.at(pos, format!("credits must be 1 to {MAX_CREDITS}")));
            }
            packs.push(Pack {
                id: r.id.clone(),
                title: title.to_owned(),
                stars: r.stars,
                credits: r.credits,
            });
        }
        Ok(Self { packs })
    }

    pub fn load(path: &std::path::Path) -> Result<Self, DataFileError> {
        let (text, file) = crate::game::data_file::read(path)?;
        Self::parse(&text, &file)
    }

    pub fn get(&self, id: &str) -> Option<&Pack> {
        self.packs.iter().find(|p| p.id == id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Pack> {
        self.packs.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_packs_load_and_bad_ones_are_refused_with_their_line() {
        let shipped = Packs::parse(SHIPPED, "assets/packs.toml").unwrap();
        assert_eq!(
            shipped.get("starter").map(|p| (p.stars, p.credits)),
            Some((50, 100))
        );
        let cases = [
            ("[[pack]]\nid = \"a\"\ntitle = \"A\"\nstars = 0\ncredits = 5\n", "p.toml:1: stars must be 1"),
            ("[[pack]]\nid = \"a\"\ntitle = \"A\"\nstars = 5\ncredits = 5\n[[pack]]\nid = \"a\"\ntitle = \"B\"\nstars = 5\ncredits = 5\n", "p.toml:6: duplicate pack"),
            ("[[pack]]\nid = \"Big!\"\ntitle = \"A\"\nstars = 5\ncredits = 5\n", "p.toml:1: id must be"),
            ("[[pack]]\nid = \"a\"\ntitle = \"A\"\nstars = 5\ncredits = -1\n", "p.toml:1: credits must be"),
            ("[[pack]]\nid = \"a\"\ntitle = \"A\"\nstars = 5\ncredits = 5\nprice = 3\n", "p.toml:"),
        ];
        for (text, want) in cases {
            let e = Packs::parse(text, "p.toml").unwrap_err().to_string();
            assert!(e.starts_with(want), "{e:?} should start with {want:?}");
        }
    }
}
