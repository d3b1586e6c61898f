//! The slash commands: one per command name of DESIGN.md, each a thin
//! translation of Discord's typed options into the same `args` object the
//! HTTP API takes. Parsing, validation and the answer all happen in the one
//! dispatch path, so Discord players get exactly what HTTP clients get.

use serde_json::{json, Value};

use poise::serenity_prelude::AutocompleteChoice;

use actors::game::guild::settings::Key;

use super::{Ctx, Error};

/// Declares slash commands that take no options.
macro_rules! no_options {
    ($($name:ident => $description:literal),* $(,)?) => {$(
        #[doc = $description]
        #[poise::command(slash_command, guild_only)]
        pub async fn $name(ctx: Ctx<'_>) -> Result<(), Error> {
            super::run(ctx, stringify!($name), json!({})).await
        }
    )*};
}

no_options! {
    profile => "Your level, XP and balances",
    balance => "Your gold, gems and credits",
    daily => "Claim today's reward (once per UTC day)",
    shop => "What the shop sells",
    inventory => "What you own",
    credits => "Your credits and today's generation prices",
    lucky => "Draw today's discount on image and video generation",
    topup => "Credit packs on sale",
    jobs => "Your latest image and video jobs",
    arena_join => "Enter the arena (entry fee in gold)",
    arena_leave => "Leave the arena before a match (fee refunded)",
    arena_status => "Whether you are waiting, and your last battles",
    xp_list => "Your roleplay characters",
}

/// Give gold to another player
#[poise::command(slash_command, guild_only)]
pub async fn give(
    ctx: Ctx<'_>,
    #[description = "Who gets the gold"] to: poise::serenity_prelude::User,
    #[description = "How much gold"] amount: i64,
) -> Result<(), Error> {
    let args = json!({ "to": to.id.get().to_string(), "amount": amount });
    super::run(ctx, "give", args).await
}

/// Buy an item from the shop
#[poise::command(slash_command, guild_only)]
pub async fn buy(
    ctx: Ctx<'_>,
    #[description = "Item id, as the shop lists it"]
    #[autocomplete = "shop_items"]
    item: String,
    #[description = "How many (default 1)"] quantity: Option<i64>,
) -> Result<(), Error> {
    let mut args = json!({ "item": item });
    if let Some(q) = quantity {
        args["quantity"] = Value::from(q);
    }
    super::run(ctx, "buy", args).await
}

/// The richest or most experienced players of this server
#[poise::command(slash_command, guild_only)]
pub async fn leaderboard(
    ctx: Ctx<'_>,
    #[description = "gold (default) or level"] by: Option<LeaderboardBy>,
) -> Result<(), Error> {
    let args = by.map_or_else(
        || json!({}),
        |b| {
            json!({ "by": match b {
                LeaderboardBy::Gold => "gold",
                LeaderboardBy::Level => "level",
            } })
        },
    );
    super::run(ctx, "leaderboard", args).await
}

/// What a leaderboard ranks by.
#[derive(Debug, Clone, Copy, poise::ChoiceParameter)]
pub enum LeaderboardBy {
    #[name = "gold"]
    Gold,
    #[name = "level"]
    Level,
}

async fn shop_items(ctx: Ctx<'_>, partial: &str) -> Vec<AutocompleteChoice> {
    let catalogue = &ctx.data().runtime.config().catalogue;
    suggest(catalogue.items().map(|i| i.id.as_str()), partial)
}

async fn workflows(ctx: Ctx<'_>, partial: &str) -> Vec<AutocompleteChoice> {
    let generation = &ctx.data().runtime.config().generation;
    suggest(generation.workflows.ids(), partial)
}

/// Generate an image or a video (costs credits)
#[poise::command(slash_command, guild_only)]
pub async fn generate(
    ctx: Ctx<'_>,
    #[description = "Which workflow (default: the one you chose with /generate_choose)"]
    #[autocomplete = "workflows"]
    workflow: Option<String>,
    #[description = "What to make (workflows that animate a picture need none)"] prompt: Option<
        String,
    >,
    #[description = "Your picture, for workflows that take one (PNG, JPEG or WebP)"]
    picture: Option<poise::serenity_prelude::Attachment>,
) -> Result<(), Error> {
    let mut args = json!({});
    if let Some(w) = workflow {
        args["workflow"] = Value::from(w);
    }
    if let Some(p) = prompt {
        args["prompt"] = Value::from(p);
    }
    if let Some(picture) = picture {
        // Fetching and checking a picture can outlast Discord's 3 seconds.
        ctx.defer_ephemeral().await?;
        match super::keep_picture(ctx, &picture).await {
            Ok(id) => args["image"] = Value::from(id),
            Err(why) => {
                ctx.send(
                    poise::CreateReply::default()
                        .content(format!("⚠️ {why}"))
                        .ephemeral(true),
                )
                .await?;
                return Ok(());
            }
        }
    }
    super::run(ctx, "generate", args).await
}

/// Choose the workflow your next /generate uses
#[poise::command(slash_command, guild_only)]
pub async fn generate_choose(
    ctx: Ctx<'_>,
    #[description = "Which workflow"]
    #[autocomplete = "workflows"]
    workflow: String,
) -> Result<(), Error> {
    super::run(ctx, "generate_choose", json!({ "workflow": workflow })).await
}

/// Cancel a job that has not finished (credits refunded)
#[poise::command(slash_command, guild_only)]
pub async fn cancel(
    ctx: Ctx<'_>,
    #[description = "The job id, as /jobs shows it"] job_id: String,
) -> Result<(), Error> {
    super::run(ctx, "cancel", json!({ "job_id": job_id })).await
}

/// Up to Discord's 25 suggestions whose text contains `partial`, ignoring case.
fn suggest<'a>(names: impl Iterator<Item = &'a str>, partial: &str) -> Vec<AutocompleteChoice> {
    let partial = partial.to_lowercase();
    names
        .filter(|n| n.to_lowercase().contains(&partial))
        .take(25)
        .map(|n| AutocompleteChoice::new(n, n))
        .collect()
}

async fn character_names(ctx: Ctx<'_>, partial: &str) -> Vec<AutocompleteChoice> {
    let roster = &ctx.data().runtime.config().roster;
    suggest(roster.characters().iter().map(|c| c.name.as_str()), partial)
}

async fn banner_ids(ctx: Ctx<'_>, partial: &str) -> Vec<AutocompleteChoice> {
    let roster = &ctx.data().runtime.config().roster;
    suggest(roster.banners().iter().map(|b| b.id.as_str()), partial)
}

/// Summon characters with gems; without options, the banners and their rates
#[poise::command(slash_command, guild_only)]
pub async fn summon(
    ctx: Ctx<'_>,
    #[description = "Which banner (default: standard)"]
    #[autocomplete = "banner_ids"]
    banner: Option<String>,
    #[description = "One summon, or ten at once"] count: Option<SummonCount>,
) -> Result<(), Error> {
    let mut args = json!({});
    if let Some(b) = banner {
        args["banner"] = Value::from(b);
    }
    if let Some(c) = count {
        args["count"] = Value::from(c as u32);
    }
    super::run(ctx, "summon", args).await
}

/// How many characters one summon command draws.
#[derive(Debug, Clone, Copy, poise::ChoiceParameter)]
pub enum SummonCount {
    #[name = "1"]
    One = 1,
    #[name = "10"]
    Ten = 10,
}

/// The characters you have collected
#[poise::command(slash_command, guild_only)]
pub async fn collection(
    ctx: Ctx<'_>,
    #[description = "Page (10 characters a page)"] page: Option<i64>,
) -> Result<(), Error> {
    let args = page.map_or_else(|| json!({}), |p| json!({ "page": p }));
    super::run(ctx, "collection", args).await
}

/// A character's rarity, level, power and what the next level costs
#[poise::command(slash_command, guild_only)]
pub async fn character(
    ctx: Ctx<'_>,
    #[description = "The character"]
    #[autocomplete = "character_names"]
    name: String,
) -> Result<(), Error> {
    super::run(ctx, "character", json!({ "name": name })).await
}

/// Raise one of your characters a level (costs its shards and gold)
#[poise::command(slash_command, guild_only)]
pub async fn upgrade(
    ctx: Ctx<'_>,
    #[description = "The character"]
    #[autocomplete = "character_names"]
    name: String,
) -> Result<(), Error> {
    super::run(ctx, "upgrade", json!({ "name": name })).await
}

/// Pick up to three of your characters to fight in the arena
#[poise::command(slash_command, guild_only)]
pub async fn team(
    ctx: Ctx<'_>,
    #[description = "First character"]
    #[autocomplete = "character_names"]
    first: Option<String>,
    #[description = "Second character"]
    #[autocomplete = "character_names"]
    second: Option<String>,
    #[description = "Third character"]
    #[autocomplete = "character_names"]
    third: Option<String>,
) -> Result<(), Error> {
    let names: Vec<String> = [first, second, third].into_iter().flatten().collect();
    super::run(ctx, "team", json!({ "names": names })).await
}

/// This server's settings and their last changes (admins)
#[poise::command(slash_command, guild_only, default_member_permissions = "MANAGE_GUILD")]
pub async fn config_show(ctx: Ctx<'_>) -> Result<(), Error> {
    super::run(ctx, "config_show", json!({})).await
}

async fn setting_names(_: Ctx<'_>, partial: &str) -> Vec<AutocompleteChoice> {
    suggest(Key::ALL.iter().map(|k| k.as_str()), partial)
}

/// Change one of this server's settings (admins)
#[poise::command(slash_command, guild_only, default_member_permissions = "MANAGE_GUILD")]
pub async fn config_set(
    ctx: Ctx<'_>,
    #[description = "The setting"]
    #[autocomplete = "setting_names"]
    key: String,
    #[description = "Its new value (channels as #mentions, roles as level:@role)"] value: String,
) -> Result<(), Error> {
    super::run(ctx, "config_set", json!({ "key": key, "value": value })).await
}

/// The currencies an admin may grant.
#[derive(Debug, Clone, Copy, poise::ChoiceParameter)]
pub enum GrantCurrency {
    #[name = "gold"]
    Gold,
    #[name = "gems"]
    Gems,
    #[name = "credits"]
    Credits,
}

/// Give a player gold, gems or credits, or take some back (admins; audited)
#[poise::command(slash_command, guild_only, default_member_permissions = "MANAGE_GUILD")]
pub async fn grant(
    ctx: Ctx<'_>,
    #[description = "Who"] user: poise::serenity_prelude::User,
    #[description = "Which currency"] currency: GrantCurrency,
    #[description = "How much (negative to take back)"] amount: i64,
    #[description = "Why (kept in the audit log)"] reason: String,
) -> Result<(), Error> {
    let currency = match currency {
        GrantCurrency::Gold => "gold",
        GrantCurrency::Gems => "gems",
        GrantCurrency::Credits => "credits",
    };
    let args = json!({ "user": user.id.get().to_string(), "currency": currency, "amount": amount, "reason": reason });
    super::run(ctx, "grant", args).await
}

/// The player's own roleplay characters, read through their actor.
async fn own_characters(ctx: Ctx<'_>, partial: &str) -> Vec<AutocompleteChoice> {
    let Some(key) = super::player(&ctx) else {
        return Vec::new();
    };
    let Ok(kind) = actors::CommandKind::parse("xp_list", &json!({})) else {
        return Vec::new();
    };
    let reply = ctx
        .data()
        .runtime
        .dispatch(actors::Command {
            id: None,
            key,
            kind,
        })
        .await;
    let names: Vec<String> = reply.data["characters"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    suggest(names.iter().map(String::as_str), partial)
}

async fn time_zones(_: Ctx<'_>, partial: &str) -> Vec<AutocompleteChoice> {
    suggest(actors::game::roleplay::day::names(), partial)
}

/// Create a roleplay character of your own; it earns XP from your posts
#[poise::command(slash_command, guild_only)]
pub async fn xp_create(
    ctx: Ctx<'_>,
    #[description = "Its name (1 to 32 characters)"] name: String,
    #[description = "A picture of it (https:// address)"] image_url: Option<String>,
) -> Result<(), Error> {
    let mut args = json!({ "name": name });
    if let Some(u) = image_url {
        args["image_url"] = Value::from(u);
    }
    super::run(ctx, "xp_create", args).await
}

/// A roleplay character's XP, level and today's counts
#[poise::command(slash_command, guild_only)]
pub async fn xp(
    ctx: Ctx<'_>,
    #[description = "Which character (default: your active one)"]
    #[autocomplete = "own_characters"]
    name: Option<String>,
) -> Result<(), Error> {
    let args = name.map_or_else(|| json!({}), |n| json!({ "name": n }));
    super::run(ctx, "xp", args).await
}

/// Delete one of your roleplay characters (type its name twice)
#[poise::command(slash_command, guild_only)]
pub async fn xp_delete(
    ctx: Ctx<'_>,
    #[description = "Which character"]
    #[autocomplete = "own_characters"]
    name: String,
    #[description = "Its exact name again, to confirm"] confirm: String,
) -> Result<(), Error> {
    super::run(
        ctx,
        "xp_delete",
        json!({ "name": name, "confirm": confirm }),
    )
    .await
}

/// Choose which of your roleplay characters earns from your posts
#[poise::command(slash_command, guild_only)]
pub async fn xp_active(
    ctx: Ctx<'_>,
    #[description = "Which character"]
    #[autocomplete = "own_characters"]
    name: String,
) -> Result<(), Error> {
    super::run(ctx, "xp_active", json!({ "name": name })).await
}

/// Rename one of your roleplay characters (its XP stays)
#[poise::command(slash_command, guild_only)]
pub async fn xp_rename(
    ctx: Ctx<'_>,
    #[description = "Which character"]
    #[autocomplete = "own_characters"]
    name: String,
    #[description = "Its new name"] new_name: String,
) -> Result<(), Error> {
    super::run(
        ctx,
        "xp_rename",
        json!({ "name": name, "new_name": new_name }),
    )
    .await
}

/// Your time zone: your daily XP caps reset at your midnight
#[poise::command(slash_command, guild_only)]
pub async fn xp_timezone(
    ctx: Ctx<'_>,
    #[description = "An IANA name such as Europe/Paris"]
    #[autocomplete = "time_zones"]
    tz: String,
) -> Result<(), Error> {
    super::run(ctx, "xp_timezone", json!({ "tz": tz })).await
}

/// Award an hf success to a player's character (admins)
#[poise::command(slash_command, guild_only, default_member_permissions = "MANAGE_GUILD")]
pub async fn hf_success(
    ctx: Ctx<'_>,
    #[description = "Whose character"] user: poise::serenity_prelude::User,
    #[description = "The character's name"] character: String,
) -> Result<(), Error> {
    let args = json!({ "user": user.id.get().to_string(), "character": character });
    super::run(ctx, "hf_success", args).await
}

/// Make a player VIP for some days more, or end it with 0 (admins; audited)
#[poise::command(slash_command, guild_only, default_member_permissions = "MANAGE_GUILD")]
pub async fn vip(
    ctx: Ctx<'_>,
    #[description = "Who"] user: poise::serenity_prelude::User,
    #[description = "Days more (0 ends it)"] days: i64,
) -> Result<(), Error> {
    let args = json!({ "user": user.id.get().to_string(), "days": days });
    super::run(ctx, "vip", args).await
}

/// `{user}` for a member named, `{}` for the caller.
fn member(user: Option<poise::serenity_prelude::User>) -> Value {
    match user {
        Some(u) => json!({ "user": u.id.get().to_string() }),
        None => json!({}),
    }
}

/// The roles this server's role rules give you (or a member), and why
#[poise::command(slash_command, guild_only)]
pub async fn roles(
    ctx: Ctx<'_>,
    #[description = "Whose (default: yours)"] user: Option<poise::serenity_prelude::User>,
) -> Result<(), Error> {
    super::run(ctx, "roles", member(user)).await
}

/// Apply the role rules' roles to a member again (admins; audited)
#[poise::command(slash_command, guild_only, default_member_permissions = "MANAGE_GUILD")]
pub async fn roles_sync(
    ctx: Ctx<'_>,
    #[description = "Whose (default: yours)"] user: Option<poise::serenity_prelude::User>,
) -> Result<(), Error> {
    super::run(ctx, "roles_sync", member(user)).await
}

/// Verify a member without the button (admins; audited)
#[poise::command(slash_command, guild_only, default_member_permissions = "MANAGE_GUILD")]
pub async fn verify(
    ctx: Ctx<'_>,
    #[description = "Who"] user: poise::serenity_prelude::User,
) -> Result<(), Error> {
    super::run(ctx, "verify", json!({ "user": user.id.get().to_string() })).await
}

/// Every slash command, for registration.
pub fn all() -> Vec<poise::Command<super::Data, Error>> {
    vec![
        profile(),
        balance(),
        daily(),
        give(),
        shop(),
        buy(),
        inventory(),
        leaderboard(),
        credits(),
        lucky(),
        topup(),
        generate(),
        generate_choose(),
        jobs(),
        cancel(),
        arena_join(),
        arena_leave(),
        arena_status(),
        summon(),
        collection(),
        character(),
        upgrade(),
        team(),
        config_show(),
        config_set(),
        grant(),
        xp_create(),
        xp(),
        xp_list(),
        xp_delete(),
        xp_active(),
        xp_rename(),
        xp_timezone(),
        hf_success(),
        vip(),
        roles(),
        roles_sync(),
        verify(),
    ]
}
