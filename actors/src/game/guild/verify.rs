//! Member verification: `verify {answer?}` is a member's press of the
//! verification button (their account old enough, their answer to the
//! guild's question right), and `verify {user}` an admin's or an
//! integration's word that a member is who they say (a website that checked
//! them). Either marks the member verified once, with an audit row; the
//! player's actor then hands the guild's `verified_role` to the front door.
//!
//! A Discord account's age is read from its id: a snowflake carries the
//! millisecond it was made, so nothing a member sends can make it older.

use serde_json::json;

use crate::game::draft::{Context, Draft, Refusal};
use crate::game::guild::role_rules::RoleChange;
use crate::ids::{UserId, UserKey};
use crate::reply::ErrorCode;
use crate::state::UserState;
use crate::writeset::{AuditRow, Write};

/// Discord's epoch (2015-01-01T00:00:00Z), in Unix milliseconds.
pub const DISCORD_EPOCH_MS: i64 = 1_420_070_400_000;
const DAY_MS: i64 = 86_400_000;

/// When the Discord account `user` was made, in Unix milliseconds.
pub fn account_created_ms(user: UserId) -> i64 {
    (user.get() >> 22).saturating_add(DISCORD_EPOCH_MS)
}

/// Whether two answers are the same answer: case and outer spaces aside.
pub fn same_answer(given: &str, expected: &str) -> bool {
    given.trim().to_lowercase() == expected.trim().to_lowercase()
}

/// An already verified member is told so and nothing is written; the front
/// door may still give the role again (someone may have removed it).
pub fn already(state: &UserState, key: UserKey, ctx: &Context<'_>) -> Option<Draft> {
    state.verified.then(|| {
        let mut d = Draft::unchanged(state, key, ctx);
        d.roles = verified_role(ctx);
        d.with(
            json!({ "verified": true, "already": true, "role_id": role(ctx) }),
            "You are already verified.",
        )
    })
}

/// The guild's verified role, to hand the front door.
fn verified_role(ctx: &Context<'_>) -> RoleChange {
    RoleChange {
        add: ctx.guild.verified_role.into_iter().collect(),
        remove: Vec::new(),
    }
}

fn role(ctx: &Context<'_>) -> Option<String> {
    ctx.guild.verified_role.map(|r| r.to_string())
}

/// Decides a verification. `by`: the admin or integration that vouches for
/// the member (no rule is checked); `None`: the member's own press.
pub fn decide(
    mut d: Draft,
    key: UserKey,
    answer: Option<&str>,
    by: Option<UserId>,
    ctx: &Context<'_>,
) -> Result<Draft, Refusal> {
    let g = ctx.guild;
    if by.is_none() {
        if g.verify_channel.is_none() && g.verified_role.is_none() {
            return Err(Refusal::new(
                ErrorCode::Disabled,
                "This server has no verification.",
            ));
        }
        let age_days = ctx.now_ms.saturating_sub(account_created_ms(key.user)) / DAY_MS;
        if age_days < g.verify_min_account_age {
            return Err(Refusal::new(
                ErrorCode::AccountTooNew,
                format!(
                    "Your Discord account must be at least {} days old to verify here (it is {age_days}). Try again later.",
                    g.verify_min_account_age
                ),
            ));
        }
        if !g.verify_question.is_empty() && !g.verify_answer.is_empty() {
            let right = answer.is_some_and(|a| same_answer(a, &g.verify_answer));
            if !right {
                return Err(Refusal::new(
                    ErrorCode::WrongAnswer,
                    "That is not the answer. Read the rules, then press Verify again.",
                ));
            }
        }
    }
    d.state.verified = true;
    d.touch();
    d.roles = verified_role(ctx);
    d.write(Write::Audit(AuditRow {
        by: by.unwrap_or(key.user),
        action: "verify",
        target: Some(key.user),
        key: "verified".to_owned(),
        old: "false".to_owned(),
        new: "true".to_owned(),
        reason: if by.is_some() { "vouched" } else { "button" }.to_owned(),
    }));
    let data = json!({ "verified": true, "already": false, "user": key.user.to_string(), "role_id": role(ctx) });
    let msg = match by {
        Some(_) => format!("<@{}> is verified.", key.user),
        None => "You are verified. Welcome!".to_owned(),
    };
    Ok(d.with(data, msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_accounts_age_is_read_from_its_id() {
        // Discord's documented example: 175928847299117063 was made on
        // 2016-04-30 at 11:18:25.796 UTC.
        let id = UserId::new(175_928_847_299_117_063).unwrap();
        assert_eq!(account_created_ms(id), 1_462_015_105_796);
    }

    #[test]
    fn answers_compare_without_case_or_outer_spaces() {
        assert!(same_answer("  earth ", "Earth"));
        assert!(!same_answer("mars", "Earth"));
    }
}
