//! A `Reply` as Discord shows it. A success is an embed: a title, the
//! reply's sentence, the lists only `data` carries (leaderboard, shop,
//! inventory, jobs, characters), the balances after the command as fields,
//! and the character's picture where there is one. An error is one short
//! private line, so a player's mistake never clutters the channel.

use actors::Reply;
use poise::serenity_prelude::{Colour, CreateEmbed};
use serde_json::Value;

/// Discord's limits: message content, embed description, field value.
const CONTENT_LIMIT: usize = 2000;
const DESCRIPTION_LIMIT: usize = 4096;

const OK: Colour = Colour::new(0x57_F2_87);
const LEVEL_UP: Colour = Colour::new(0xF1_C4_0F);

pub fn reply(r: &Reply) -> poise::CreateReply {
    if !r.ok {
        return poise::CreateReply::default()
            .content(error_line(r))
            .ephemeral(true);
    }
    poise::CreateReply::default().embed(embed(r))
}

/// An error as one line: what went wrong, and whether to just retry.
pub fn error_line(r: &Reply) -> String {
    let line = match &r.error {
        Some(e) if e.code.is_retryable() => format!("⏳ {} (try again in a moment)", e.message),
        Some(e) => format!("⚠️ {}", e.message),
        None => r.message.clone(),
    };
    cut(line, CONTENT_LIMIT)
}

/// The text of a successful reply: its sentence and its list.
pub fn description(r: &Reply) -> String {
    let mut text = r.message.clone();
    for line in list(r) {
        text.push('\n');
        text.push_str(&line);
    }
    cut(text, DESCRIPTION_LIMIT)
}

fn embed(r: &Reply) -> CreateEmbed {
    let d = &r.data;
    let mut e = CreateEmbed::new()
        .title(title(r))
        .description(description(r))
        .colour(if d.get("level_up").is_some() {
            LEVEL_UP
        } else {
            OK
        });
    for (label, key) in [("Gold", "gold"), ("Gems", "gems"), ("Credits", "credits")] {
        if let Some(v) = d.get(key).and_then(Value::as_i64) {
            e = e.field(label, v.to_string(), true);
        }
    }
    if let Some(held) = d
        .get("credits_held")
        .and_then(Value::as_i64)
        .filter(|h| *h > 0)
    {
        e = e.field("Held by jobs", held.to_string(), true);
    }
    if let Some(level) = d.get("level").and_then(Value::as_i64) {
        e = e.field("Level", level.to_string(), true);
    }
    if let Some(xp) = d.get("xp").and_then(Value::as_i64) {
        e = e.field("XP", xp.to_string(), true);
    }
    let picture = d
        .get("image_url")
        .or_else(|| d.get("image"))
        .and_then(Value::as_str)
        .filter(|u| u.starts_with("https://"));
    if let Some(url) = picture {
        e = e.thumbnail(url);
    }
    e
}

/// A character's name where the reply is about one; else the command's.
fn title(r: &Reply) -> String {
    if let Some(name) = r.data.get("name").and_then(Value::as_str) {
        return cut(name.to_owned(), 256);
    }
    let mut words = r.command.replace('_', " ");
    if let Some(first) = words.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    words
}

fn cut(text: String, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text;
    }
    text.chars().take(limit - 1).collect::<String>() + "…"
}

fn rows(data: &Value, key: &str) -> Vec<Value> {
    data[key].as_array().cloned().unwrap_or_default()
}

fn list(reply: &Reply) -> Vec<String> {
    let d = &reply.data;
    match reply.command.as_str() {
        "leaderboard" => rows(d, "entries")
            .iter()
            .map(|e| {
                format!(
                    "{}. <@{}> — {} gold, level {}",
                    e["rank"],
                    e["user_id"].as_str().unwrap_or("?"),
                    e["gold"],
                    e["level"]
                )
            })
            .collect(),
        "shop" => rows(d, "items")
            .iter()
            .map(|i| {
                format!(
                    "`{}` {} — {} {}",
                    i["item"].as_str().unwrap_or("?"),
                    i["name"].as_str().unwrap_or("?"),
                    i["price"],
                    i["currency"].as_str().unwrap_or("")
                )
            })
            .collect(),
        "inventory" => rows(d, "items")
            .iter()
            .map(|i| format!("{} × {}", i["quantity"], i["name"].as_str().unwrap_or("?")))
            .collect(),
        "jobs" => rows(d, "jobs")
            .iter()
            .map(|j| {
                let extra = match (j["progress_pct"].as_u64(), j["ahead"].as_u64()) {
                    (Some(p), _) => format!(" — {p}%"),
                    (None, Some(a)) => format!(" — {a} ahead"),
                    _ => j["result"]
                        .as_str()
                        .or(j["reason"].as_str())
                        .map(|s| format!(" — {s}"))
                        .unwrap_or_default(),
                };
                format!(
                    "`{}` {} {}{extra}",
                    j["job_id"].as_str().unwrap_or("?"),
                    j["workflow"].as_str().unwrap_or("?"),
                    j["status"].as_str().unwrap_or("?"),
                )
            })
            .collect(),
        "xp_list" => rows(d, "characters")
            .iter()
            .map(|c| {
                format!(
                    "{}**{}** — level {}, {} XP · today {}/{}",
                    if c["active"] == true { "▶ " } else { "" },
                    c["name"].as_str().unwrap_or("?"),
                    c["level"],
                    c["xp"],
                    c["daily_xp"],
                    c["daily_rp_cap"],
                )
            })
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actors::ErrorCode;
    use serde_json::json;

    #[test]
    fn errors_say_so_and_lists_are_spelled_out() {
        let busy = Reply::error("give", ErrorCode::Busy, "the server is busy");
        assert_eq!(
            error_line(&busy),
            "⏳ the server is busy (try again in a moment)"
        );
        let board = Reply::ok(
            "leaderboard",
            json!({"entries": [{"rank": 1, "user_id": "42", "gold": 900, "level": 3}]}),
            "Top 1 by gold.",
        );
        assert_eq!(
            description(&board),
            "Top 1 by gold.\n1. <@42> — 900 gold, level 3"
        );
        let long = Reply::ok("profile", Value::Null, "x".repeat(5000));
        assert_eq!(description(&long).chars().count(), DESCRIPTION_LIMIT);
        assert_eq!(title(&long), "Profile");
        let named = Reply::ok("xp", json!({"name": "Ayla"}), "");
        assert_eq!(title(&named), "Ayla");
    }
}
