//! The roleplay bot's PostgreSQL, read directly: read only, in one
//! snapshot (`REPEATABLE READ READ ONLY`), streamed a player at a time.
//! Its schema, as that bot documents it:
//!
//! - `config`: guild-wide `rp_channels[]`, `hf_channels[]`, `char_per_rp`,
//!   `daily_rp_cap`, `hf_attempt_xp`, `hf_success_xp`, `daily_hf_cap`;
//! - `users`: `user_id` (primary key), `active_character_id` (a
//!   `characters.id`), `timezone`, `last_xp_reset`;
//! - `characters`: `id`, `user_id`, `name`, `xp`, `daily_xp`, `daily_hf`,
//!   `char_buffer`, `image_url`.
//!
//! Each row becomes the JSON the file would hold (`to_jsonb`, so any
//! column type reads the same) and is checked by the same rules.

use futures::TryStreamExt;
use serde_json::{Map, Value};
use sqlx::{Connection, Row};
use tokio::sync::mpsc::Sender;

use super::{roleplay, Checked, Rules};

pub async fn read(url: &str, rules: &Rules, tx: &Sender<Checked>) -> anyhow::Result<()> {
    let guild = rules
        .guild
        .ok_or_else(|| anyhow::anyhow!("--from-postgres needs --guild"))?
        .to_string();
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .map_err(|e| anyhow::anyhow!("connecting to the roleplay bot's database: {e}"))?;
    let mut snapshot = conn.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *snapshot)
        .await?;
    let configs: Vec<String> = sqlx::query_scalar("SELECT to_jsonb(c)::text FROM config c")
        .fetch_all(&mut *snapshot)
        .await
        .map_err(|e| anyhow::anyhow!("reading its config table: {e}"))?;
    for text in configs {
        let doc = serde_json::from_str::<Value>(&text)
            .map_err(|e| e.to_string())
            .map(|v| without(v, &["id", "guild_id"]));
        let checked =
            roleplay::check_config(format!("config of guild {guild}"), &guild, doc, rules);
        if tx.send(checked).await.is_err() {
            return Ok(());
        }
    }
    let mut rows = sqlx::query(
        "SELECT u.user_id::text, to_jsonb(u)::text, \
           COALESCE((SELECT jsonb_agg(to_jsonb(c) ORDER BY c.id) FROM characters c \
                     WHERE c.user_id = u.user_id), '[]'::jsonb)::text \
         FROM users u ORDER BY u.user_id",
    )
    .fetch(&mut *snapshot);
    while let Some(r) = rows
        .try_next()
        .await
        .map_err(|e| anyhow::anyhow!("reading its users and characters: {e}"))?
    {
        let user: String = r.try_get(0)?;
        let (u, chars): (String, String) = (r.try_get(1)?, r.try_get(2)?);
        let doc = player(&u, &chars);
        let checked = roleplay::check_player(format!("users.{user}"), &guild, &user, doc, rules);
        if tx.send(checked).await.is_err() {
            break;
        }
    }
    drop(rows);
    snapshot.rollback().await?;
    Ok(())
}

/// A `users` row and its `characters` rows as the file's player document.
fn player(user: &str, characters: &str) -> Result<Value, String> {
    let Value::Object(mut u) = serde_json::from_str::<Value>(user).map_err(|e| e.to_string())?
    else {
        return Err("the users row is not an object".to_owned());
    };
    let Value::Array(chars) =
        serde_json::from_str::<Value>(characters).map_err(|e| e.to_string())?
    else {
        return Err("its characters are not a list".to_owned());
    };
    u.remove("user_id");
    let active = u.remove("active_character_id").filter(|v| !v.is_null());
    let mut doc = Map::new();
    for (k, v) in u {
        doc.insert(k, v);
    }
    if let Some(id) = &active {
        let name = chars
            .iter()
            .find(|c| c.get("id") == Some(id))
            .and_then(|c| c.get("name").cloned())
            .ok_or_else(|| format!("active_character_id {id} is none of their characters"))?;
        doc.insert("active_character".to_owned(), name);
    }
    let chars = chars
        .into_iter()
        .map(|c| without(c, &["id", "user_id"]))
        .collect();
    doc.insert("characters".to_owned(), Value::Array(chars));
    Ok(Value::Object(doc))
}

fn without(mut v: Value, keys: &[&str]) -> Value {
    if let Some(o) = v.as_object_mut() {
        for k in keys {
            o.remove(*k);
        }
    }
    v
}
