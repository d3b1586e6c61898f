//! The shop's catalogue (data, loaded from a TOML file) and the pricing rule
//! for a purchase: total price with checked arithmetic, per-player limits.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::domain::money::Currency;

/// Longest item name accepted.
pub const MAX_ITEM_LEN: usize = 40;

/// The catalogue shipped with kokoro.
pub const DEFAULT_CATALOGUE: &str = include_str!("../../../../assets/shop.toml");

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub id: String,
    pub name: String,
    pub price: i64,
    pub currency: Currency,
    /// Most one player may own; `None` for no limit.
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    items: BTreeMap<String, Item>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("shop file is not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("shop item {id:?}: {why}")]
    Item { id: String, why: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalogue {
    #[serde(default)]
    item: Vec<RawItem>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawItem {
    id: String,
    name: String,
    price: i64,
    currency: String,
    #[serde(default)]
    limit: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurchaseError {
    UnknownItem,
    OverLimit { limit: i64, owned: i64 },
    PriceOverflow,
}

impl Catalogue {
    pub fn parse(text: &str) -> Result<Self, CatalogueError> {
        let raw: RawCatalogue = toml::from_str(text)?;
        let mut items = BTreeMap::new();
        for r in raw.item {
            let bad = |why: &str| CatalogueError::Item {
                id: r.id.clone(),
                why: why.into(),
            };
            if r.id.is_empty()
                || r.id.len() > MAX_ITEM_LEN
                || !r
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(bad("id must be 1 to 40 of a-z, 0-9, '_'"));
            }
            if r.price <= 0 || r.price > crate::domain::money::MAX_AMOUNT {
                return Err(bad("price must be positive and at most 10^12"));
            }
            if r.limit < 0 {
                return Err(bad("limit must be 0 (none) or positive"));
            }
            let currency =
                Currency::parse(&r.currency).ok_or_else(|| bad("currency must be gold or gems"))?;
            let item = Item {
                id: r.id.clone(),
                name: r.name,
                price: r.price,
                currency,
                limit: (r.limit > 0).then_some(r.limit),
            };
            if items.insert(r.id.clone(), item).is_some() {
                return Err(bad("listed twice"));
            }
        }
        Ok(Self { items })
    }

    pub fn shipped() -> Self {
        // The shipped file is checked by a unit test; an error here is a build defect.
        Self::parse(DEFAULT_CATALOGUE).unwrap_or_default()
    }

    pub fn items(&self) -> impl Iterator<Item = &Item> {
        self.items.values()
    }

    pub fn get(&self, id: &str) -> Option<&Item> {
        self.items.get(id)
    }

    /// The total price of `quantity` of `id` for a player who owns `owned`.
    pub fn price(
        &self,
        id: &str,
        quantity: i64,
        owned: i64,
    ) -> Result<(&Item, i64), PurchaseError> {
        let item = self.get(id).ok_or(PurchaseError::UnknownItem)?;
        if let Some(limit) = item.limit {
            if owned.checked_add(quantity).is_none_or(|n| n > limit) {
                return Err(PurchaseError::OverLimit { limit, owned });
            }
        }
        let total = item
            .price
            .checked_mul(quantity)
            .ok_or(PurchaseError::PriceOverflow)?;
        Ok((item, total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn shipped_catalogue_parses_and_is_not_empty() {
        let c = Catalogue::parse(DEFAULT_CATALOGUE).unwrap();
        assert!(c.items().count() >= 3);
        assert_eq!(c.get("fishing_rod").unwrap().limit, Some(1));
    }

    #[test]
    fn limits_count_what_is_already_owned() {
        let c = Catalogue::shipped();
        assert_eq!(c.price("fishing_rod", 1, 0).map(|(_, p)| p), Ok(150));
        assert_eq!(
            c.price("fishing_rod", 1, 1),
            Err(PurchaseError::OverLimit { limit: 1, owned: 1 })
        );
        assert_eq!(
            c.price("health_potion", 5, 16),
            Err(PurchaseError::OverLimit {
                limit: 20,
                owned: 16
            })
        );
        assert_eq!(c.price("nope", 1, 0), Err(PurchaseError::UnknownItem));
    }

    #[test]
    fn bad_catalogues_name_the_item() {
        let err = Catalogue::parse("[[item]]\nid='x'\nname='X'\nprice=-1\ncurrency='gold'\n")
            .unwrap_err();
        assert!(err.to_string().contains("\"x\""), "{err}");
        assert!(
            Catalogue::parse("[[item]]\nid='x'\nname='X'\nprice=1\ncurrency='copper'\n").is_err()
        );
        assert!(Catalogue::parse(
            "[[item]]\nid='x'\nname='X'\nprice=1\ncurrency='gold'\ncolour=1\n"
        )
        .is_err());
    }

    proptest! {
        #[test]
        fn price_is_unit_price_times_quantity_or_refused(q in 1i64..i64::MAX, owned in 0i64..1000) {
            let c = Catalogue::shipped();
            match c.price("bait", q, owned) {
                Ok((_, total)) => prop_assert_eq!(total, 5 * q),
                Err(e) => { prop_assert_eq!(e, PurchaseError::PriceOverflow); prop_assert!(q.checked_mul(5).is_none()); }
            }
        }
    }
}
