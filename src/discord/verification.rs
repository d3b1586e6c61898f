//! Member verification on Discord. kokoro keeps one message with a
//! **Verify** button in a guild's `verify_channel`: found among the
//! channel's recent messages or posted when the guild comes up, when an
//! admin sets the channel, and again when someone deletes it.
//!
//! A press becomes the member's `verify` command (its interaction id is the
//! command id, so a redelivered press verifies once) and goes through their
//! actor like every command, so a raid of presses queues in the actors'
//! mailboxes and group commit, not here. When the guild asks a question, the
//! press opens a form and its submission is the command. The answer is
//! private; the verified role goes through the role desk (`roles.rs`), kept
//! to Discord's rate limits per guild.
//!
//! With verification on, the door asks for the privileged Server Members
//! intent, for joins: each is counted, and a burst of them (a raid) is told
//! to the admins in `admin_channel`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actors::{Command, CommandId, CommandKind, GuildId, Reply, Runtime, UserId, UserKey};
use poise::serenity_prelude as serenity;
use serenity::builder::Builder as _;

use actors::telemetry as m;

/// The button's custom id.
pub const VERIFY_BUTTON: &str = "kokoro:verify";
/// The answer form's custom id, and its one text input's.
pub const ANSWER_FORM: &str = "kokoro:verify_answer";
const ANSWER_INPUT: &str = "answer";
/// Discord waits 3 seconds for an interaction's first answer.
const DEFER_AFTER: Duration = Duration::from_secs(2);
/// Joins in one minute that make a raid worth telling the admins of.
pub const RAID_JOINS_PER_MINUTE: u32 = 100;
/// How often the admins hear of the same guild's raid.
const RAID_NOTE_EVERY: Duration = Duration::from_secs(600);

#[derive(Default)]
struct Joins {
    window_start: Option<Instant>,
    in_window: u32,
    noted: Option<Instant>,
}

pub struct Verification {
    runtime: Arc<Runtime>,
    /// The verification message of each guild, as found or posted.
    posted: Mutex<HashMap<serenity::GuildId, (serenity::ChannelId, serenity::MessageId)>>,
    joins: Mutex<HashMap<serenity::GuildId, Joins>>,
}

fn game_guild(g: serenity::GuildId) -> Option<GuildId> {
    GuildId::new(i64::try_from(g.get()).ok()?).ok()
}

fn member_key(g: Option<serenity::GuildId>, user: &serenity::User) -> Option<UserKey> {
    let user = UserId::new(i64::try_from(user.id.get()).ok()?).ok()?;
    Some(UserKey::new(game_guild(g?)?, user))
}

/// The verification message: what it is for, and the button.
fn message() -> serenity::CreateMessage {
    let embed = serenity::CreateEmbed::new()
        .title("Verification")
        .description("Press **Verify** to get access to the rest of the server.")
        .colour(serenity::Colour::DARK_GREEN);
    let button = serenity::CreateButton::new(VERIFY_BUTTON)
        .label("Verify")
        .style(serenity::ButtonStyle::Success);
    serenity::CreateMessage::new()
        .embed(embed)
        .components(vec![serenity::CreateActionRow::Buttons(vec![button])])
}

fn is_ours(m: &serenity::Message, me: serenity::UserId) -> bool {
    m.author.id == me
        && m.components.iter().any(|row| {
            row.components.iter().any(|c| {
                matches!(c, serenity::ActionRowComponent::Button(b)
                    if matches!(&b.data, serenity::ButtonKind::NonLink { custom_id, .. } if custom_id == VERIFY_BUTTON))
            })
        })
}

/// What a member reads: the reply's message, or its error's.
fn text(reply: &Reply) -> String {
    match &reply.error {
        Some(e) => e.message.clone(),
        None => reply.message.clone(),
    }
}

impl Verification {
    pub fn new(runtime: Arc<Runtime>) -> Self {
        Self {
            runtime,
            posted: Mutex::default(),
            joins: Mutex::default(),
        }
    }

    /// Makes sure the guild's verification message is in its channel.
    pub async fn ensure(&self, ctx: &serenity::Context, guild: serenity::GuildId) {
        let Some(g) = game_guild(guild) else { return };
        let Some(settings) = self.runtime.guild_settings(g).await else {
            return;
        };
        let Some(channel) = settings.verify_channel.map(serenity::ChannelId::new) else {
            return;
        };
        let known = self.known(guild);
        if known.is_some_and(|(c, _)| c == channel) {
            return;
        }
        let me = ctx.cache.current_user().id;
        match channel
            .messages(&ctx.http, serenity::GetMessages::new().limit(50))
            .await
        {
            Ok(recent) => {
                if let Some(found) = recent.iter().find(|m| is_ours(m, me)) {
                    self.remember(guild, channel, found.id);
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(%guild, %channel, error = %e, "could not read the verification channel; posting the message anew");
            }
        }
        match channel.send_message(&ctx.http, message()).await {
            Ok(posted) => {
                tracing::info!(%guild, %channel, "posted the verification message");
                self.remember(guild, channel, posted.id);
            }
            Err(e) => tracing::warn!(
                %guild, %channel, error = %e,
                "could not post the verification message: the bot needs View Channel and Send Messages there"
            ),
        }
    }

    async fn in_verify_channel(
        &self,
        guild: serenity::GuildId,
        channel: serenity::ChannelId,
    ) -> bool {
        let Some(g) = game_guild(guild) else {
            return false;
        };
        self.runtime
            .guild_settings(g)
            .await
            .is_some_and(|s| s.verify_channel == Some(channel.get()))
    }

    /// The guild's message, if one is known.
    fn known(
        &self,
        guild: serenity::GuildId,
    ) -> Option<(serenity::ChannelId, serenity::MessageId)> {
        self.posted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&guild)
            .copied()
    }

    fn remember(
        &self,
        guild: serenity::GuildId,
        channel: serenity::ChannelId,
        id: serenity::MessageId,
    ) {
        self.posted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(guild, (channel, id));
    }

    /// Looks at every guild's verification message every `every` (default
    /// 5 minutes): a deleted one is posted again, a newly set channel gets
    /// one. Runs while the connection lasts.
    pub async fn look_every(self: Arc<Self>, ctx: serenity::Context, every: Option<Duration>) {
        let every = every.unwrap_or(Duration::from_secs(300));
        loop {
            // The guilds the gateway brought, and those with a message.
            let mut guilds: std::collections::BTreeSet<_> =
                ctx.cache.guilds().into_iter().collect();
            guilds.extend(
                self.posted
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .keys()
                    .copied(),
            );
            for guild in guilds {
                self.look(&ctx, guild).await;
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Whether the guild's known message is still there; if not, posted anew.
    pub async fn look(&self, ctx: &serenity::Context, guild: serenity::GuildId) {
        let known = self.known(guild);
        if let Some((channel, id)) = known {
            if let Err(serenity::Error::Http(e)) = channel.message(&ctx.http, id).await {
                if e.status_code() == Some(serenity::StatusCode::NOT_FOUND) {
                    self.deleted(guild, id);
                }
            }
        }
        self.ensure(ctx, guild).await;
    }

    /// Forgets the message if it was ours: the next `ensure` posts anew.
    fn deleted(&self, guild: serenity::GuildId, id: serenity::MessageId) -> bool {
        let mut posted = self.posted.lock().unwrap_or_else(PoisonError::into_inner);
        if posted.get(&guild).is_some_and(|(_, m)| *m == id) {
            posted.remove(&guild);
            return true;
        }
        false
    }

    /// A member's verification, answered privately.
    async fn verify(
        &self,
        http: &serenity::Http,
        interaction: (serenity::InteractionId, &str),
        key: UserKey,
        answer: Option<String>,
    ) {
        let id = interaction.0.get().to_string().parse::<CommandId>().ok();
        let args = match answer {
            Some(a) => serde_json::json!({ "answer": a }),
            None => serde_json::json!({}),
        };
        let reply = match CommandKind::parse("verify", &args) {
            Ok(kind) => {
                let dispatch = self.runtime.dispatch(Command { id, key, kind });
                tokio::pin!(dispatch);
                match tokio::time::timeout(DEFER_AFTER, &mut dispatch).await {
                    Ok(reply) => reply,
                    Err(_) => {
                        // A raid: the press waits in the member's mailbox.
                        let defer = serenity::CreateInteractionResponse::Defer(
                            serenity::CreateInteractionResponseMessage::new().ephemeral(true),
                        );
                        let _ = defer.execute(http, interaction).await;
                        let reply = dispatch.await;
                        let followup = serenity::CreateInteractionResponseFollowup::new()
                            .content(text(&reply))
                            .ephemeral(true);
                        if let Err(e) = followup.execute(http, (None, interaction.1)).await {
                            tracing::warn!(error = %e, "could not answer a verification");
                        }
                        return;
                    }
                }
            }
            Err(e) => Reply::error("verify", actors::ErrorCode::InvalidArgument, e.to_string()),
        };
        let answer = serenity::CreateInteractionResponse::Message(
            serenity::CreateInteractionResponseMessage::new()
                .content(text(&reply))
                .ephemeral(true),
        );
        if let Err(e) = answer.execute(http, interaction).await {
            tracing::warn!(error = %e, "could not answer a verification");
        }
    }

    /// A press of the button: the form when the guild asks a question, else
    /// the verification itself.
    async fn pressed(&self, ctx: &serenity::Context, press: &serenity::ComponentInteraction) {
        let Some(key) = member_key(press.guild_id, &press.user) else {
            return;
        };
        let settings = self.runtime.guild_settings(key.guild).await;
        let question = settings
            .as_ref()
            .filter(|s| !s.verify_question.is_empty() && !s.verify_answer.is_empty())
            .map(|s| s.verify_question.clone());
        let interaction = (press.id, press.token.as_str());
        match question {
            Some(q) => {
                let input = serenity::CreateInputText::new(
                    serenity::InputTextStyle::Short,
                    q,
                    ANSWER_INPUT,
                )
                .required(true)
                .max_length(
                    u16::try_from(actors::game::guild::settings::MAX_ANSWER_CHARS).unwrap_or(100),
                );
                let form = serenity::CreateModal::new(ANSWER_FORM, "Verification")
                    .components(vec![serenity::CreateActionRow::InputText(input)]);
                if let Err(e) = serenity::CreateInteractionResponse::Modal(form)
                    .execute(&ctx.http, interaction)
                    .await
                {
                    tracing::warn!(error = %e, "could not open the verification form");
                }
            }
            None => self.verify(&ctx.http, interaction, key, None).await,
        }
    }

    /// The answer form, submitted.
    async fn answered(&self, ctx: &serenity::Context, form: &serenity::ModalInteraction) {
        let Some(key) = member_key(form.guild_id, &form.user) else {
            return;
        };
        let answer = form
            .data
            .components
            .iter()
            .flat_map(|row| &row.components)
            .find_map(|c| match c {
                serenity::ActionRowComponent::InputText(t) if t.custom_id == ANSWER_INPUT => {
                    t.value.clone()
                }
                _ => None,
            })
            .unwrap_or_default();
        self.verify(&ctx.http, (form.id, form.token.as_str()), key, Some(answer))
            .await;
    }

    /// Counts a join; a burst of them is told to the admins once in a while.
    async fn joined(&self, ctx: &serenity::Context, guild: serenity::GuildId) {
        metrics::counter!(m::DISCORD_MEMBER_JOINS_TOTAL).increment(1);
        let raid = {
            let mut joins = self.joins.lock().unwrap_or_else(PoisonError::into_inner);
            let j = joins.entry(guild).or_default();
            let now = Instant::now();
            if j.window_start
                .is_none_or(|s| now.duration_since(s) >= Duration::from_secs(60))
            {
                (j.window_start, j.in_window) = (Some(now), 0);
            }
            j.in_window = j.in_window.saturating_add(1);
            let due = j
                .noted
                .is_none_or(|n| now.duration_since(n) >= RAID_NOTE_EVERY);
            let raid = j.in_window >= RAID_JOINS_PER_MINUTE && due;
            if raid {
                j.noted = Some(now);
            }
            raid.then_some(j.in_window)
        };
        let Some(count) = raid else { return };
        tracing::warn!(%guild, joins = count, "a burst of joins: a raid?");
        let Some(channel) = self.admin_channel(guild).await else {
            return;
        };
        let note = format!(
            "⚠️ {count} members joined in the last minute. Verification holds them at the door; \
             raise `verify_min_account_age` or set a `verify_question` if this is a raid."
        );
        if let Err(e) = channel.say(&ctx.http, note).await {
            tracing::warn!(%guild, error = %e, "could not post a note in the admin channel");
        }
    }

    async fn admin_channel(&self, guild: serenity::GuildId) -> Option<serenity::ChannelId> {
        let settings = self.runtime.guild_settings(game_guild(guild)?).await?;
        settings.admin_channel.map(serenity::ChannelId::new)
    }
}

/// Serenity's events for verification, beside poise's.
pub struct VerificationEvents(pub Arc<Verification>);

#[serenity::async_trait]
impl serenity::EventHandler for VerificationEvents {
    async fn guild_create(
        &self,
        ctx: serenity::Context,
        guild: serenity::Guild,
        _new: Option<bool>,
    ) {
        self.0.ensure(&ctx, guild.id).await;
    }

    async fn message_delete(
        &self,
        ctx: serenity::Context,
        channel: serenity::ChannelId,
        deleted: serenity::MessageId,
        guild: Option<serenity::GuildId>,
    ) {
        let Some(guild) = guild else { return };
        // Ours, or any in the verification channel: a delete can arrive
        // while the message is being posted, before its id is known here;
        // `look` asks Discord whether the known one is still there.
        if self.0.deleted(guild, deleted) || self.0.in_verify_channel(guild, channel).await {
            self.0.look(&ctx, guild).await;
        }
    }

    async fn guild_member_addition(&self, ctx: serenity::Context, member: serenity::Member) {
        self.0.joined(&ctx, member.guild_id).await;
    }

    async fn interaction_create(&self, ctx: serenity::Context, interaction: serenity::Interaction) {
        match &interaction {
            serenity::Interaction::Component(press) if press.data.custom_id == VERIFY_BUTTON => {
                self.0.pressed(&ctx, press).await;
            }
            serenity::Interaction::Modal(form) if form.data.custom_id == ANSWER_FORM => {
                self.0.answered(&ctx, form).await;
            }
            _ => {}
        }
    }
}
