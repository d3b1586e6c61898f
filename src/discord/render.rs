//! A `Reply` as a Discord message: the reply's own sentence, plus the lists
//! that only `data` carries (leaderboard, shop, inventory, jobs), within
//! Discord's 2,000-character limit.

use actors::Reply;
use serde_json::Value;

const LIMIT: usize = 2000;

pub fn message(reply: &Reply) -> String {
    let mut text = match &reply.error {
        Some(e) if e.code.is_retryable() => format!("⏳ {} (try again in a moment)", e.message),
        Some(e) => format!("⚠️ {}", e.message),
        None => reply.message.clone(),
    };
    for line in list(reply) {
        text.push('\n');
        text.push_str(&line);
    }
    if text.chars().count() > LIMIT {
        text = text.chars().take(LIMIT - 1).collect::<String>() + "…";
    }
    text
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
                let extra = j["result"]
                    .as_str()
                    .or(j["reason"].as_str())
                    .map(|s| format!(" — {s}"))
                    .unwrap_or_default();
                format!(
                    "`{}` {} {}{extra}",
                    j["job_id"].as_str().unwrap_or("?"),
                    j["workflow"].as_str().unwrap_or("?"),
                    j["status"].as_str().unwrap_or("?"),
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
            message(&busy),
            "⏳ the server is busy (try again in a moment)"
        );
        let board = Reply::ok(
            "leaderboard",
            json!({"entries": [{"rank": 1, "user_id": "42", "gold": 900, "level": 3}]}),
            "Top 1 by gold.",
        );
        assert_eq!(
            message(&board),
            "Top 1 by gold.\n1. <@42> — 900 gold, level 3"
        );
        let long = Reply::ok("profile", Value::Null, "x".repeat(5000));
        assert_eq!(message(&long).chars().count(), LIMIT);
    }
}
