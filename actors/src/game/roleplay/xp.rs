//! What one post earns. Pure: a character and the guild's numbers in, the
//! character changed and the XP earned out.
//!
//! - In a roleplay channel, the post's characters go into the character's
//!   buffer, and every full `char_per_rp` of the buffer is one XP, up to
//!   `daily_rp_cap` a day. What is left under one XP stays in the buffer
//!   for the next post; once the cap stops a post, the buffer is emptied
//!   (writing past the cap banks nothing for tomorrow).
//! - In an hf channel, a post earns `hf_attempt_xp` and an admin's success
//!   `hf_success_xp`, together up to `daily_hf_cap` a day; the last award
//!   before the cap is cut to fit.

use super::{RpCharacter, MAX_XP};
use crate::game::guild::settings::GuildSettings;

/// A roleplay post of `chars` characters; returns the XP earned.
pub fn roleplay_post(ch: &mut RpCharacter, chars: i64, g: &GuildSettings) -> i64 {
    let per = g.char_per_rp.max(1);
    let buffer = ch.char_buffer.saturating_add(chars.max(0));
    let points = buffer / per;
    let room = g.daily_rp_cap.saturating_sub(ch.daily_xp).max(0);
    let earned = points.min(room).min(MAX_XP.saturating_sub(ch.xp).max(0));
    ch.char_buffer = if earned < points { 0 } else { buffer % per };
    ch.xp = ch.xp.saturating_add(earned);
    ch.daily_xp = ch.daily_xp.saturating_add(earned);
    earned
}

/// An hf award of `amount` XP (an attempt or a success); returns the XP
/// earned, cut to the day's room.
pub fn hf_post(ch: &mut RpCharacter, amount: i64, g: &GuildSettings) -> i64 {
    let room = g.daily_hf_cap.saturating_sub(ch.daily_hf).max(0);
    let earned = amount
        .max(0)
        .min(room)
        .min(MAX_XP.saturating_sub(ch.xp).max(0));
    ch.xp = ch.xp.saturating_add(earned);
    ch.daily_hf = ch.daily_hf.saturating_add(earned);
    earned
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::game::guild::settings::Key;
    use proptest::prelude::*;

    fn fresh() -> RpCharacter {
        RpCharacter {
            id: 1,
            name: "Ayla".into(),
            xp: 0,
            daily_xp: 0,
            daily_hf: 0,
            char_buffer: 0,
            image_url: None,
            created_ms: 0,
        }
    }

    #[test]
    fn full_units_earn_and_the_rest_waits_in_the_buffer() {
        let g = GuildSettings::default(); // 100 characters a point, 100 a day
        let mut ch = fresh();
        assert_eq!(roleplay_post(&mut ch, 250, &g), 2);
        assert_eq!((ch.xp, ch.daily_xp, ch.char_buffer), (2, 2, 50));
        assert_eq!(roleplay_post(&mut ch, 50, &g), 1);
        assert_eq!((ch.xp, ch.char_buffer), (3, 0));
        assert_eq!(roleplay_post(&mut ch, 99, &g), 0);
        assert_eq!(ch.char_buffer, 99);
    }

    #[test]
    fn the_cap_stops_earning_and_empties_the_buffer() {
        let mut g = GuildSettings::default();
        g.set(Key::DailyRpCap, "3").unwrap();
        let mut ch = fresh();
        assert_eq!(roleplay_post(&mut ch, 550, &g), 3);
        assert_eq!((ch.xp, ch.daily_xp, ch.char_buffer), (3, 3, 0));
        assert_eq!(roleplay_post(&mut ch, 10_000, &g), 0);
        assert_eq!((ch.xp, ch.char_buffer), (3, 0));
    }

    #[test]
    fn hf_awards_are_cut_to_the_room_left() {
        let mut g = GuildSettings::default();
        g.set(Key::DailyHfCap, "12").unwrap();
        let mut ch = fresh();
        assert_eq!(hf_post(&mut ch, 5, &g), 5);
        assert_eq!(hf_post(&mut ch, 5, &g), 5);
        assert_eq!(hf_post(&mut ch, 5, &g), 2);
        assert_eq!(hf_post(&mut ch, 20, &g), 0);
        assert_eq!((ch.xp, ch.daily_hf), (12, 12));
    }

    #[test]
    fn a_character_at_the_most_xp_earns_nothing_and_says_so() {
        let g = GuildSettings::default();
        let mut ch = fresh();
        ch.xp = MAX_XP - 1;
        assert_eq!(hf_post(&mut ch, 20, &g), 1);
        assert_eq!(ch.xp, MAX_XP);
        assert_eq!(hf_post(&mut ch, 20, &g), 0);
        assert_eq!(roleplay_post(&mut ch, 10 * g.char_per_rp, &g), 0);
        assert_eq!(ch.xp, MAX_XP);
    }

    proptest! {
        /// Whatever the posts, XP is what the characters written give, never
        /// more than the cap, and the buffer stays under one point.
        #[test]
        fn xp_is_the_characters_written_within_the_cap(
            per in 1i64..500, cap in 0i64..200,
            posts in proptest::collection::vec(0i64..5_000, 1..200),
        ) {
            let mut g = GuildSettings::default();
            g.set(Key::CharPerRp, &per.to_string()).unwrap();
            g.set(Key::DailyRpCap, &cap.to_string()).unwrap();
            let mut ch = fresh();
            let total: i64 = posts.iter().sum();
            let mut earned = 0;
            for p in &posts {
                earned += roleplay_post(&mut ch, *p, &g);
                prop_assert!(ch.char_buffer < per);
            }
            prop_assert_eq!(ch.xp, earned);
            prop_assert_eq!(ch.daily_xp, earned);
            prop_assert_eq!(earned, (total / per).min(cap).min(earned.max(0)));
            prop_assert!(earned <= cap);
            if earned < cap {
                prop_assert_eq!(earned, total / per, "below the cap, every full point counts");
                prop_assert_eq!(ch.char_buffer, total % per);
            }
        }
    }
}
