//! Roleplay posts: every message a member writes in a guild becomes one
//! `message {channel_id, chars}` command, with the message id as its
//! command id, so the gateway redelivering an event counts it once. Only
//! the length is used; the text is never stored or logged.
//!
//! Discord sends a message's text to a bot only with the privileged
//! message-content intent (without it `content` arrives empty for messages
//! that do not mention the bot), so the length needs it too; the front
//! door asks for it only when roleplay XP from posts is switched on.
//!
//! A level-up is announced in the channel, and the role configured for the
//! new level is added. A missing permission is a log line and a note to the
//! server's admins in the channel, never a crash.

use std::sync::Arc;

use actors::game::roleplay::RoleplayCommand;
use actors::{Command, CommandId, CommandKind, GuildId, Runtime, UserId, UserKey};
use poise::serenity_prelude as serenity;

pub struct RoleplayPosts {
    pub runtime: Arc<Runtime>,
}

/// Whether a message is a member's own post: not a bot's, not a webhook's,
/// not a system message (joins, pins, boosts).
fn counts(msg: &serenity::Message) -> bool {
    !msg.author.bot
        && msg.webhook_id.is_none()
        && matches!(
            msg.kind,
            serenity::MessageType::Regular | serenity::MessageType::InlineReply
        )
}

/// The command a member's post becomes, or `None` where it cannot earn.
fn command(msg: &serenity::Message) -> Option<Command> {
    let guild = GuildId::new(i64::try_from(msg.guild_id?.get()).ok()?).ok()?;
    let user = UserId::new(i64::try_from(msg.author.id.get()).ok()?).ok()?;
    let id = msg.id.get().to_string().parse::<CommandId>().ok();
    let chars = i64::try_from(msg.content.chars().count()).ok()?;
    Some(Command {
        id,
        key: UserKey::new(guild, user),
        kind: CommandKind::Roleplay(RoleplayCommand::Message {
            channel_id: msg.channel_id.get(),
            chars: chars.min(actors::game::roleplay::MAX_CHARS),
        }),
    })
}

#[serenity::async_trait]
impl serenity::EventHandler for RoleplayPosts {
    async fn message(&self, ctx: serenity::Context, msg: serenity::Message) {
        if !counts(&msg) {
            return;
        }
        let Some(command) = command(&msg) else {
            return;
        };
        let reply = self.runtime.dispatch(command).await;
        if !reply.ok {
            // Busy or storage trouble: the post is not counted; the player
            // is not interrupted for it, the operator sees the metrics.
            tracing::debug!(code = ?reply.code(), "a roleplay post was not counted");
            return;
        }
        // A redelivered post was counted the first time, and announced then.
        if reply.replayed {
            return;
        }
        let Some(level) = reply.data["level_up"]["level"].as_i64() else {
            return;
        };
        let name = reply.data["name"].as_str().unwrap_or("Your character");
        let author = msg.author.id;
        let mut text = format!("🎉 <@{author}>'s **{name}** reached level {level}!");
        let role = reply.data["level_up"]["role_id"]
            .as_str()
            .and_then(|r| r.parse::<u64>().ok())
            .filter(|r| *r != 0)
            .map(serenity::RoleId::new);
        if let (Some(role), Some(guild)) = (role, msg.guild_id) {
            let why = format!("kokoro: roleplay level {level}");
            match ctx
                .http
                .add_member_role(guild, author, role, Some(&why))
                .await
            {
                Ok(()) => text.push_str(&format!(" They are now <@&{role}>.")),
                Err(e) => {
                    tracing::warn!(
                        guild = %guild, role = %role, error = %e,
                        "could not add a level role: the bot needs Manage Roles and a role above it"
                    );
                    text.push_str(&format!(
                        "\n-# Admins: I could not give the <@&{role}> role. I need the Manage Roles \
                         permission, and my role must be above it."
                    ));
                }
            }
        }
        let announce = serenity::CreateMessage::new()
            .content(text)
            .allowed_mentions(serenity::CreateAllowedMentions::new().users([author]));
        if let Err(e) = msg.channel_id.send_message(&ctx.http, announce).await {
            tracing::warn!(channel = %msg.channel_id, error = %e, "could not announce a level-up");
        }
    }
}
