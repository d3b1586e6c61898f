//! The game, one module per feature. Each feature owns its commands (their
//! names, parsing and `args`), its pure rules (state in, `Draft` out, no I/O,
//! no clock read: `now` and every random draw come in through `Context`) and
//! the typed writes its drafts carry. Adding a command touches its feature
//! and one line per front door; adding a feature adds a module here and a
//! variant to `CommandKind`.

pub mod arena;
pub mod collection;
pub mod data_file;
pub mod draft;
pub mod economy;
pub mod generation;
pub mod guild;
pub mod roleplay;

pub use draft::{Context, Draft, Refusal};

use crate::command::CommandKind;
use crate::ids::{CommandId, UserKey};
use crate::state::UserState;

/// Decides a command addressed to this player, in its feature. Commands
/// answered without the player's state (`shop`, `leaderboard`, `jobs`,
/// `arena_status`) or that read storage first (`cancel`, `arena_leave`)
/// are answered elsewhere and refused here as `internal`.
pub fn decide(
    state: &UserState,
    key: UserKey,
    kind: &CommandKind,
    command_id: Option<CommandId>,
    ctx: &Context<'_>,
) -> Result<Draft, Refusal> {
    // A post that cannot earn is answered without writing, not even the
    // player's first row: a front door sends one for every message.
    if let CommandKind::Roleplay(roleplay::RoleplayCommand::Message { channel_id, .. }) = kind {
        if !roleplay::earns(state, ctx.guild, *channel_id) {
            return Ok(Draft::unchanged(state, key, ctx)
                .with(serde_json::json!({ "earned": 0 }), "Nothing to earn here."));
        }
    }
    // Looking at a member's roles changes nothing, not even creating them.
    if let CommandKind::Guild(guild::GuildCommand::Roles { .. }) = kind {
        return Ok(guild::roles::show(state, key, ctx));
    }
    // Verifying twice writes nothing the second time.
    if let CommandKind::Guild(guild::GuildCommand::Verify { .. }) = kind {
        if let Some(d) = guild::verify::already(state, key, ctx) {
            return Ok(d);
        }
    }
    let d = Draft::begin(state, key, ctx, command_id)?;
    match kind {
        CommandKind::Economy(c) => economy::decide(d, key, c, ctx),
        CommandKind::Generation(c) => generation::decide(d, key, c, ctx),
        CommandKind::Arena(c) => arena::decide(d, key, c, ctx),
        CommandKind::Collection(c) => collection::decide(d, c, ctx),
        CommandKind::Guild(c) => guild::decide(d, key, c, ctx),
        CommandKind::Roleplay(c) => roleplay::decide(d, key, c, ctx),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Currency;
    use crate::game::economy::shop::Catalogue;
    use crate::game::economy::EconomyCommand as E;
    use crate::game::generation::job::{Job, JobStatus};
    use crate::game::generation::{allowance, credits};
    use crate::game::generation::{close_job, GenerationCommand as G};
    use crate::ids::UserKey;
    use crate::reply::ErrorCode;
    use crate::state::UserState;
    use crate::writeset::{LedgerEntry, Write};
    use proptest::prelude::*;

    fn key(u: i64) -> UserKey {
        UserKey::new(
            crate::ids::GuildId::new(1).unwrap(),
            crate::ids::UserId::new(u).unwrap(),
        )
    }

    static ROSTER: std::sync::LazyLock<crate::game::collection::roster::Roster> =
        std::sync::LazyLock::new(|| crate::game::collection::roster::Roster::shipped().unwrap());

    /// The shipped workflows with no free jobs: these tests are about
    /// charges (`allowance.rs` tests the free ones).
    static GENERATION: std::sync::LazyLock<crate::game::generation::GenerationData> =
        std::sync::LazyLock::new(|| {
            let mut g = crate::game::generation::GenerationData::default();
            g.workflows = g.workflows.each(|w| w.daily_free = 0);
            g.rules.trial_daily_free = 0;
            g
        });

    /// A player whose free jobs and VIP have been read.
    fn read(mut s: UserState) -> UserState {
        s.set_allowance(Default::default());
        s
    }

    fn ctx(catalogue: &Catalogue) -> Context<'_> {
        Context {
            roster: &ROSTER,
            generation: &GENERATION,
            guild: crate::game::guild::settings::GuildSettings::fallback(),
            now_ms: 1_700_000_000_000,
            catalogue,
            starting_gold: 100,
            starting_credits: 50,
            starting_gems: 0,
            fresh_id: 7,
            draw: 0,
        }
    }

    fn ledger_sum(d: &Draft, c: Currency) -> i64 {
        d.writes
            .ledger
            .iter()
            .filter(|l| l.currency == c)
            .map(|l| l.amount)
            .sum()
    }

    #[test]
    fn first_command_creates_the_player_with_a_welcome_ledger_row() {
        let cat = Catalogue::shipped();
        let d = decide(
            &UserState::default(),
            key(1),
            &CommandKind::Economy(E::Balance),
            None,
            &ctx(&cat),
        )
        .unwrap();
        assert!(d.state.exists);
        assert_eq!(d.state.gold, 100);
        assert_eq!(ledger_sum(&d, Currency::Gold), 100);
        assert_eq!(d.data["gold"], 100);
    }

    #[test]
    fn reading_an_existing_player_writes_nothing() {
        let cat = Catalogue::shipped();
        let s = UserState {
            exists: true,
            gold: 5,
            ..Default::default()
        };
        let d = decide(
            &s,
            key(1),
            &CommandKind::Economy(E::Profile),
            None,
            &ctx(&cat),
        )
        .unwrap();
        assert!(d.writes.is_empty());
        assert_eq!(d.state, s);
    }

    #[test]
    fn give_refuses_self_and_overdraft_and_writes_an_outbox_row() {
        let cat = Catalogue::shipped();
        let s = UserState {
            exists: true,
            gold: 50,
            ..Default::default()
        };
        let to = crate::ids::UserId::new(2).unwrap();
        let me = crate::ids::UserId::new(1).unwrap();
        let c = ctx(&cat);
        assert_eq!(
            decide(
                &s,
                key(1),
                &CommandKind::Economy(E::Give { to: me, amount: 1 }),
                None,
                &c
            )
            .unwrap_err()
            .code,
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            decide(
                &s,
                key(1),
                &CommandKind::Economy(E::Give { to, amount: 51 }),
                None,
                &c
            )
            .unwrap_err()
            .code,
            ErrorCode::InsufficientFunds
        );
        let d = decide(
            &s,
            key(1),
            &CommandKind::Economy(E::Give { to, amount: 50 }),
            None,
            &c,
        )
        .unwrap();
        assert_eq!(d.state.gold, 0);
        let t = d.writes.transfer_out().unwrap();
        assert_eq!((t.from, t.to, t.amount), (me, to, 50));
        assert_eq!(
            d.writes.ledger,
            vec![LedgerEntry {
                currency: Currency::Gold,
                amount: -50,
                balance_after: 0,
                reason: "give"
            }]
        );
    }

    #[test]
    fn buy_charges_the_item_currency_and_respects_limits() {
        let cat = Catalogue::shipped();
        let s = UserState {
            exists: true,
            gold: 1000,
            gems: 25,
            ..Default::default()
        };
        let c = ctx(&cat);
        let two_charms = CommandKind::Economy(E::Buy {
            item: "lucky_charm".into(),
            quantity: 2,
        });
        let d = decide(&s, key(1), &two_charms, None, &c).unwrap();
        assert_eq!(
            (d.state.gold, d.state.gems, d.state.owned("lucky_charm")),
            (1000, 5, 2)
        );
        let again = decide(&d.state, key(1), &two_charms, None, &c);
        assert_eq!(again.unwrap_err().code, ErrorCode::LimitReached);
        let poor = decide(
            &d.state,
            key(1),
            &CommandKind::Economy(E::Buy {
                item: "golden_crown".into(),
                quantity: 1,
            }),
            None,
            &c,
        );
        assert_eq!(poor.unwrap_err().code, ErrorCode::InsufficientFunds);
    }

    #[test]
    fn lucky_once_a_day_discounts_generation_until_midnight() {
        let cat = Catalogue::shipped();
        let s = read(UserState {
            exists: true,
            credits: 100,
            ..Default::default()
        });
        let mut c = ctx(&cat);
        c.draw = 99; // the rarest tier: SSR, 50% off
        let lucky = decide(&s, key(1), &CommandKind::Generation(G::Lucky), None, &c).unwrap();
        assert_eq!(lucky.data["discount_pct"], 50);
        assert_eq!(lucky.data["tier"], "SSR");
        let again = decide(
            &lucky.state,
            key(1),
            &CommandKind::Generation(G::Lucky),
            None,
            &c,
        );
        assert_eq!(again.unwrap_err().code, ErrorCode::AlreadyClaimed);
        let image = CommandKind::Generation(G::Generate {
            workflow: Some("image".into()),
            prompt: "a cat".into(),
            image: None,
            notify: None,
        });
        let g = decide(&lucky.state, key(1), &image, None, &c).unwrap();
        assert_eq!(
            (g.data["held"].as_i64(), g.state.credits_available()),
            (Some(5), 95)
        );
        c.now_ms += 86_400_000;
        let tomorrow = decide(&lucky.state, key(1), &image, None, &c).unwrap();
        assert_eq!(
            tomorrow.data["held"], 10,
            "the discount ends at UTC midnight"
        );
    }

    #[test]
    fn generate_names_a_workflow_this_server_offers_with_what_it_needs() {
        let cat = Catalogue::shipped();
        let c = ctx(&cat);
        let s = read(UserState {
            exists: true,
            credits: 100,
            ..Default::default()
        });
        let generate = |workflow: &str, prompt: &str| {
            let kind = CommandKind::Generation(G::Generate {
                workflow: Some(workflow.into()),
                prompt: prompt.into(),
                image: None,
                notify: None,
            });
            decide(&s, key(1), &kind, None, &c).map(|d| d.state.credits_available())
        };
        assert_eq!(
            generate("audio", "a fox").unwrap_err().code,
            ErrorCode::NotFound
        );
        let no_prompt = generate("image", "").unwrap_err();
        assert_eq!(no_prompt.code, ErrorCode::InvalidArgument);
        assert!(
            no_prompt.message.contains("needs a prompt"),
            "{no_prompt:?}"
        );
        let no_picture = generate("video_zoom", "").unwrap_err();
        assert!(
            no_picture.message.contains("needs an input picture"),
            "{no_picture:?}"
        );
        assert_eq!(generate("image", "a fox"), Ok(90), "the file's price");
    }

    #[test]
    fn generate_holds_credits_and_limits_open_jobs() {
        let cat = Catalogue::shipped();
        let mut s = read(UserState {
            exists: true,
            credits: 1000,
            ..Default::default()
        });
        let c = ctx(&cat);
        let image = CommandKind::Generation(G::Generate {
            workflow: Some("image".into()),
            prompt: "a fox".into(),
            image: None,
            notify: None,
        });
        for n in 1..=i64::from(credits::MAX_OPEN_JOBS) {
            let d = decide(&s, key(1), &image, None, &c).unwrap();
            let job = d.writes.job_new().cloned().unwrap();
            assert_eq!(
                (job.cost, job.held, job.workflow.as_str()),
                (10, true, "image")
            );
            assert!(d.writes.ledger.is_empty(), "a hold books nothing");
            assert_eq!((d.state.credits, d.state.credits_held), (1000, 10 * n));
            s = d.state;
        }
        let over = decide(&s, key(1), &image, None, &c).unwrap_err();
        assert_eq!(over.code, ErrorCode::LimitReached);
        let poor = read(UserState {
            exists: true,
            credits: 9,
            ..Default::default()
        });
        assert_eq!(
            decide(&poor, key(1), &image, None, &c).unwrap_err().code,
            ErrorCode::InsufficientFunds
        );
        // Held credits cannot be spent twice.
        let held = read(UserState {
            exists: true,
            credits: 25,
            credits_held: 20,
            open_jobs: 2,
            ..Default::default()
        });
        let refused = decide(&held, key(1), &image, None, &c).unwrap_err();
        assert_eq!(refused.code, ErrorCode::InsufficientFunds);
        assert!(
            refused.message.contains("5 available (20 held"),
            "{refused:?}"
        );
    }

    #[test]
    fn a_done_job_is_charged_and_a_failed_or_cancelled_one_released() {
        let cat = Catalogue::shipped();
        let c = ctx(&cat);
        let s = read(UserState {
            exists: true,
            credits: 100,
            ..Default::default()
        });
        let image = CommandKind::Generation(G::Generate {
            workflow: Some("image".into()),
            prompt: "a fox".into(),
            image: None,
            notify: None,
        });
        let queued = decide(&s, key(1), &image, None, &c).unwrap();
        let job = queued.writes.job_new().cloned().unwrap();
        for (status, credits_after) in [
            (JobStatus::Done, 90),
            (JobStatus::Failed, 100),
            (JobStatus::Cancelled, 100),
        ] {
            let d = close_job(&queued.state, &job, status, None, &c).unwrap();
            assert_eq!(
                (d.state.credits, d.state.credits_held, d.state.open_jobs),
                (credits_after, 0, 0),
                "{status:?}"
            );
            assert_eq!(
                ledger_sum(&d, Currency::Credits),
                credits_after - 100,
                "only a capture is booked"
            );
            assert_eq!(d.writes.job_close().map(|j| j.status), Some(status));
            assert!(
                d.writes.writes.iter().any(Write::is_guard),
                "a guarded close"
            );
        }
    }

    #[test]
    fn a_job_charged_when_queued_before_holds_is_refunded_if_it_fails() {
        let cat = Catalogue::shipped();
        let c = ctx(&cat);
        let s = read(UserState {
            exists: true,
            credits: 90,
            open_jobs: 1,
            ..Default::default()
        });
        let queued = decide(
            &s,
            key(1),
            &CommandKind::Generation(G::Generate {
                workflow: Some("image".into()),
                prompt: "a fox".into(),
                image: None,
                notify: None,
            }),
            None,
            &c,
        )
        .unwrap();
        let mut job = queued.writes.job_new().cloned().unwrap();
        job.held = false;
        let failed = close_job(&s, &job, JobStatus::Failed, None, &c).unwrap();
        assert_eq!((failed.state.credits, failed.state.credits_held), (100, 0));
        assert_eq!(failed.writes.ledger[0].reason, "refund");
        let done = close_job(&s, &job, JobStatus::Done, None, &c).unwrap();
        assert_eq!(done.state.credits, 90, "already paid");
        assert!(done.writes.ledger.is_empty());
    }

    #[test]
    fn a_chargeback_never_takes_what_queued_jobs_hold() {
        let cat = Catalogue::shipped();
        let c = ctx(&cat);
        let s = read(UserState {
            exists: true,
            credits: 30,
            credits_held: 20,
            open_jobs: 2,
            ..Default::default()
        });
        let kind = CommandKind::Generation(G::Chargeback {
            payment_id: "pay-1".into(),
            credits: 25,
            by: None,
        });
        let d = decide(&s, key(1), &kind, None, &c).unwrap();
        assert_eq!(
            (d.data["clawed_back"].as_i64(), d.data["owed"].as_i64()),
            (Some(10), Some(15))
        );
        assert_eq!((d.state.credits, d.state.credits_held), (20, 20));
    }

    #[test]
    fn a_chosen_workflow_serves_the_next_generate_once_within_the_hour() {
        let cat = Catalogue::shipped();
        let mut c = ctx(&cat);
        let s = read(UserState {
            exists: true,
            credits: 100,
            ..Default::default()
        });
        let choose = CommandKind::Generation(G::Choose {
            workflow: "image".into(),
        });
        let unnamed = CommandKind::Generation(G::Generate {
            workflow: None,
            prompt: "a fox".into(),
            image: None,
            notify: None,
        });
        let refused = decide(&s, key(1), &unnamed, None, &c).unwrap_err();
        assert_eq!(refused.code, ErrorCode::NotFound, "nothing chosen yet");
        let chose = decide(&s, key(1), &choose, None, &c).unwrap();
        assert!(
            chose.message.contains("say what to make"),
            "{}",
            chose.message
        );
        let queued = decide(&chose.state, key(1), &unnamed, None, &c).unwrap();
        assert_eq!(queued.data["workflow"], "image");
        assert_eq!(
            decide(&queued.state, key(1), &unnamed, None, &c)
                .unwrap_err()
                .code,
            ErrorCode::NotFound,
            "a choice serves one job"
        );
        c.now_ms += allowance::CHOICE_LASTS_MS;
        assert_eq!(
            decide(&chose.state, key(1), &unnamed, None, &c)
                .unwrap_err()
                .code,
            ErrorCode::NotFound,
            "a choice lasts an hour"
        );
        let unknown = CommandKind::Generation(G::Choose {
            workflow: "audio".into(),
        });
        assert_eq!(
            decide(&s, key(1), &unknown, None, &c).unwrap_err().code,
            ErrorCode::NotFound
        );
    }

    proptest! {
        /// Whatever sequence of commands, every draft's ledger explains its
        /// balances exactly, no balance is negative, and a player never has
        /// more jobs open than the limit.
        #[test]
        fn ledger_explains_every_balance(ops in proptest::collection::vec((0u8..8, 1i64..400, 0i64..5), 1..60)) {
            let cat = Catalogue::shipped();
            let mut s = read(UserState::default());
            let (mut gold_sum, mut gem_sum, mut credit_sum) = (0i64, 0i64, 0i64);
            let mut open: Vec<Job> = Vec::new();
            let mut now = 1_700_000_000_000i64;
            for (op, amount, day_step) in ops {
                now += day_step * 43_200_000;
                let c = Context { now_ms: now, catalogue: &cat, roster: &ROSTER, generation: &GENERATION, guild: crate::game::guild::settings::GuildSettings::fallback(), starting_gold: 100, starting_credits: 50, starting_gems: 0, fresh_id: 1, draw: amount as u64 };
                let kind = match op {
                    0 => CommandKind::Economy(E::Daily),
                    1 => CommandKind::Economy(E::Give { to: crate::ids::UserId::new(9).unwrap(), amount }),
                    2 => CommandKind::Economy(E::Buy { item: "bait".into(), quantity: amount % 20 + 1 }),
                    3 => CommandKind::Economy(E::Buy { item: "lucky_charm".into(), quantity: 1 }),
                    4 => CommandKind::Generation(G::Lucky),
                    5 => CommandKind::Generation(G::Generate { workflow: Some(if amount % 2 == 0 { "image".into() } else { "upscale".into() }), prompt: "fox".into(), image: None, notify: None }),
                    _ => CommandKind::Economy(E::Balance),
                };
                let decided = if op >= 6 && !open.is_empty() {
                    let job = open.remove(0);
                    let status = if op == 6 { JobStatus::Done } else { JobStatus::Failed };
                    close_job(&s, &job, status, None, &c)
                } else {
                    decide(&s, key(1), &kind, None, &c)
                };
                if let Ok(d) = decided {
                    gold_sum += ledger_sum(&d, Currency::Gold);
                    gem_sum += ledger_sum(&d, Currency::Gems);
                    credit_sum += ledger_sum(&d, Currency::Credits);
                    open.extend(d.writes.job_new().cloned());
                    s = d.state;
                }
                prop_assert_eq!(gold_sum, s.gold);
                prop_assert_eq!(gem_sum, s.gems);
                prop_assert_eq!(credit_sum, s.credits);
                prop_assert!(s.gold >= 0 && s.gems >= 0 && s.credits >= 0);
                prop_assert_eq!(usize::from(s.open_jobs), open.len());
                prop_assert!(s.open_jobs <= credits::MAX_OPEN_JOBS);
                let holds: i64 = open.iter().filter(|j| j.held).map(|j| j.cost).sum();
                prop_assert_eq!(s.credits_held, holds);
                prop_assert!(s.credits_held <= s.credits, "a hold is always covered");
            }
        }
    }
}
