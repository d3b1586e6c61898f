//! `roles {user?}` and `roles_sync {user?}`: the roles a guild's
//! `role_rules` want a member to have, and why. Both are decided in the
//! member's actor, from the state it holds; `roles_sync` (admin) also
//! writes an audit row, and its actor hands the whole set to the front
//! door to apply again.

use serde_json::{json, Value};

use crate::game::collection::roster::Roster;
use crate::game::draft::{Context, Draft, Refusal};
use crate::game::guild::role_rules::{Facts, RoleChange, RoleRules};
use crate::game::guild::settings::GuildSettings;
use crate::ids::{UserId, UserKey};
use crate::state::UserState;
use crate::writeset::{AuditRow, Write};

/// What the rules read of a player, from the state their actor holds.
/// A part not read yet (the collection, the roleplay characters, VIP) is
/// `None`: see `RoleRules::needs`.
pub fn facts(state: &UserState, roster: &Roster, guild: &GuildSettings, now_ms: i64) -> Facts {
    Facts {
        level: i64::from(state.level()),
        gold: state.gold,
        streak: i64::from(state.daily_streak),
        rp_level: state.roleplay().map(|rp| {
            rp.characters
                .iter()
                .map(|c| i64::from(guild.level_for_xp(c.xp)))
                .max()
                .unwrap_or(0)
        }),
        owned: state.collection().map(|c| {
            let mut n = [0i64; 4];
            for o in &c.owned {
                if let Some((_, ch)) = roster.find(&o.name) {
                    n[ch.rarity.index()] = n[ch.rarity.index()].saturating_add(1);
                }
            }
            n
        }),
        vip: state.allowance().map(|a| a.is_vip(now_ms)),
    }
}

/// The roles a player's commit changes: `None` when the guild has no
/// rules (the common case, checked first so it costs nothing).
pub fn changed(
    rules: &RoleRules,
    before: &UserState,
    after: &UserState,
    roster: &Roster,
    guild: &GuildSettings,
    now_ms: i64,
) -> Option<RoleChange> {
    if rules.is_empty() {
        return None;
    }
    let change = rules.change(
        &facts(before, roster, guild, now_ms),
        &facts(after, roster, guild, now_ms),
    );
    (!change.is_empty()).then_some(change)
}

/// Each rule with whether it holds for the player, and the roles wanted.
fn explain(rules: &RoleRules, f: &Facts) -> Value {
    let verdict = |v: Option<bool>| match v {
        Some(true) => json!(true),
        Some(false) => json!(false),
        None => Value::Null,
    };
    let rules_json: Vec<Value> = rules
        .0
        .iter()
        .map(|r| json!({ "rule": r.to_string(), "role_id": r.role.to_string(), "holds": verdict(r.holds(f)) }))
        .collect();
    let wanted: Vec<String> = rules
        .wanted(f)
        .into_iter()
        .filter(|(_, v)| *v == Some(true))
        .map(|(r, _)| r.to_string())
        .collect();
    json!({
        "rules": rules_json,
        "wanted": wanted,
        "facts": {
            "level": f.level, "gold": f.gold, "streak": f.streak, "rp_level": f.rp_level,
            "characters": f.owned.map(|o| o.iter().sum::<i64>()),
            "ssr": f.owned.map(|o| o[3]), "vip": f.vip,
        },
    })
}

fn listing(rules: &RoleRules, wanted: &Value) -> String {
    if rules.is_empty() {
        return "This server has no role rules (config_set role_rules).".to_owned();
    }
    let roles: Vec<String> = wanted["wanted"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|r| format!("<@&{r}>"))
        .collect();
    if roles.is_empty() {
        "No role rule holds yet.".to_owned()
    } else {
        format!("Roles earned: {}", roles.join(", "))
    }
}

/// `roles {user?}`: changes nothing, not even creating the player.
pub fn show(state: &UserState, key: UserKey, ctx: &Context<'_>) -> Draft {
    let rules = &ctx.guild.role_rules;
    let mut data = explain(rules, &facts(state, ctx.roster, ctx.guild, ctx.now_ms));
    data["user"] = json!(key.user.to_string());
    let msg = listing(rules, &data);
    Draft::unchanged(state, key, ctx).with(data, msg)
}

/// `roles_sync {user?}`: every role the rules decide, to apply again, and
/// an audit row naming the admin.
pub fn sync(
    mut d: Draft,
    key: UserKey,
    by: Option<UserId>,
    ctx: &Context<'_>,
) -> Result<Draft, Refusal> {
    let rules = &ctx.guild.role_rules;
    let f = facts(&d.state, ctx.roster, ctx.guild, ctx.now_ms);
    let change = rules.sync(&f);
    let mut data = explain(rules, &f);
    data["user"] = json!(key.user.to_string());
    data["roles"] = change.to_json();
    d.roles = change.clone();
    d.write(Write::Audit(AuditRow {
        by: by.unwrap_or(key.user),
        action: "roles_sync",
        target: Some(key.user),
        key: "roles".to_owned(),
        old: String::new(),
        new: change.to_json().to_string(),
        reason: String::new(),
    }));
    let msg = format!(
        "{} Re-applying: {} to add, {} to remove.",
        listing(rules, &data),
        change.add.len(),
        change.remove.len()
    );
    Ok(d.with(data, msg))
}
