//! Credits and generation: `credits`, `lucky`, `generate`, `jobs`, `cancel`,
//! and how a job closes (done, failed or cancelled, refunded once). Its
//! commands, their pure rules and what they write. The queue actors that
//! render live in the runtime (`job_queue.rs`); `jobs` and `cancel` read
//! storage, so the runtime and the player's actor answer them.

pub mod allowance;
pub mod credits;
pub mod data;
pub mod job;
pub mod lucky;
pub mod packs;
pub mod payment;
pub(crate) mod sql;
pub mod workflow;

use serde_json::{json, Value};

use crate::args::{Args, ParseError};
use crate::domain::day::utc_day;
use crate::domain::Currency;
use crate::game::draft::{Context, Draft, Refusal};
use crate::game::generation::job::{Job, JobStatus};
use crate::ids::UserKey;
use crate::reply::ErrorCode;
use crate::state::UserState;
use crate::writeset::{JobClose, Write};
use allowance::Allowance;
pub use data::GenerationData;
use workflow::Workflows;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GenerationCommand {
    Credits,
    Lucky,
    /// The credit packs on sale.
    Topup,
    /// `workflow` is the id the player typed, looked up when decided (none:
    /// the one they chose with `generate_choose`); the prompt is empty for
    /// workflows that take none.
    Generate {
        workflow: Option<String>,
        prompt: String,
        /// The player's upload id, for workflows that take an input image.
        image: Option<String>,
        /// Where to tell the player that the job ended (`discord:<channel
        /// id>`, `telegram:<chat id>`): set by the front door the command
        /// came through, never parsed from a player's arguments.
        notify: Option<String>,
    },
    Jobs,
    Cancel {
        job_id: String,
    },
    /// Chooses the workflow of the next `generate` that names none: a
    /// conversation's first step (Telegram: a button, then the prompt or
    /// the photo as the next message), kept with the player so it survives
    /// a restart.
    Choose {
        workflow: String,
    },
    /// Admin: makes a player VIP for `days` more (0 ends it).
    Vip {
        user: crate::ids::UserId,
        days: u32,
        /// The admin, set by the runtime when it readdresses the command.
        by: Option<crate::ids::UserId>,
    },
    /// The payment provider reports credits bought (sent by the webhook).
    Payment {
        payment_id: String,
        credits: i64,
    },
    /// The payment provider reports a payment charged back.
    Chargeback {
        payment_id: String,
        credits: i64,
        /// The admin who refunded it (a front door's refund command), for
        /// the audit log; none when the provider reports it.
        by: Option<crate::ids::UserId>,
    },
}

impl GenerationCommand {
    pub const NAMES: &'static [&'static str] = &[
        "credits",
        "lucky",
        "topup",
        "generate",
        "jobs",
        "cancel",
        "generate_choose",
        "vip",
        "payment",
        "chargeback",
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Self::Credits => "credits",
            Self::Lucky => "lucky",
            Self::Topup => "topup",
            Self::Generate { .. } => "generate",
            Self::Jobs => "jobs",
            Self::Cancel { .. } => "cancel",
            Self::Choose { .. } => "generate_choose",
            Self::Vip { .. } => "vip",
            Self::Payment { .. } => "payment",
            Self::Chargeback { .. } => "chargeback",
        }
    }

    /// The command called `name`, if it is one of this feature's.
    pub fn parse(name: &str, a: &mut Args<'_>) -> Result<Option<Self>, ParseError> {
        Ok(Some(match name {
            "credits" => Self::Credits,
            "lucky" => Self::Lucky,
            "topup" => Self::Topup,
            "jobs" => Self::Jobs,
            "generate" => Self::Generate {
                workflow: match a.optional_str("workflow")? {
                    None => None,
                    Some(w) if workflow::valid_id(w) => Some(w.to_owned()),
                    Some(_) => return Err(ParseError::invalid(WORKFLOW_ID)),
                },
                prompt: match a.get("prompt") {
                    None => String::new(),
                    Some(Value::String(s)) => credits::check_prompt(s)
                        .map_err(|e| ParseError::invalid(format!("prompt: {e}")))?,
                    Some(_) => return Err(ParseError::invalid("prompt must be a string")),
                },
                image: match a.optional_str("image")? {
                    None => None,
                    Some(id) if crate::ids::valid_upload_id(id) => Some(id.to_owned()),
                    Some(_) => {
                        return Err(ParseError::invalid(
                            "image must be an upload id as POST /v1/uploads returned it (u followed by hex digits)",
                        ))
                    }
                },
                notify: None,
            },
            "cancel" => Self::Cancel {
                job_id: job_id(a, "job_id")?,
            },
            "generate_choose" => Self::Choose {
                workflow: workflow(a, "workflow")?,
            },
            "payment" => Self::Payment {
                payment_id: payment_id(a)?,
                credits: a.integer("credits", 1, payment::MAX_CREDITS)?,
            },
            "chargeback" => Self::Chargeback {
                payment_id: payment_id(a)?,
                credits: a.integer("credits", 1, payment::MAX_CREDITS)?,
                by: None,
            },
            "vip" => Self::Vip {
                user: a.user_id("user")?,
                days: a.integer("days", 0, 3650)? as u32,
                by: None,
            },
            _ => return Ok(None),
        }))
    }

    /// The `args` object that `parse` reads back into this command.
    pub fn args(&self) -> Value {
        match self {
            Self::Generate {
                workflow,
                prompt,
                image,
                ..
            } => {
                let mut args = json!({});
                if let Some(w) = workflow {
                    args["workflow"] = json!(w);
                }
                if !prompt.is_empty() {
                    args["prompt"] = json!(prompt);
                }
                if let Some(i) = image {
                    args["image"] = json!(i);
                }
                args
            }
            Self::Cancel { job_id } => json!({ "job_id": job_id }),
            Self::Choose { workflow } => json!({ "workflow": workflow }),
            Self::Vip { user, days, .. } => json!({ "user": user.to_string(), "days": days }),
            Self::Payment {
                payment_id,
                credits,
            }
            | Self::Chargeback {
                payment_id,
                credits,
                ..
            } => json!({ "payment_id": payment_id, "credits": credits }),
            Self::Credits | Self::Lucky | Self::Topup | Self::Jobs => json!({}),
        }
    }

    /// Whether an `ok` answer always changed something.
    pub fn writes_when_ok(&self) -> bool {
        matches!(
            self,
            Self::Lucky
                | Self::Generate { .. }
                | Self::Cancel { .. }
                | Self::Choose { .. }
                | Self::Vip { .. }
                | Self::Payment { .. }
                | Self::Chargeback { .. }
        )
    }
}

const WORKFLOW_ID: &str =
    "workflow must be a workflow id (lowercase letters, digits, _ or -); /credits lists them";

fn workflow(a: &mut Args<'_>, name: &str) -> Result<String, ParseError> {
    match a.required(name)? {
        Value::String(s) if workflow::valid_id(s) => Ok(s.clone()),
        _ => Err(ParseError::invalid(WORKFLOW_ID)),
    }
}

/// A provider's payment id: 1 to 100 letters, digits, `_`, `-`, `.`, `:`.
fn payment_id(a: &mut Args<'_>) -> Result<String, ParseError> {
    match a.required("payment_id")? {
        Value::String(s) if s.parse::<crate::ids::CommandId>().is_ok() && s.len() <= 100 => {
            Ok(s.clone())
        }
        _ => Err(ParseError::invalid(
            "payment_id must be 1 to 100 letters, digits, _, -, . or :",
        )),
    }
}

fn job_id(a: &mut Args<'_>, name: &str) -> Result<String, ParseError> {
    match a.required(name)? {
        Value::String(s)
            if s.len() > 1
                && s.len() <= 40
                && s.starts_with('j')
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) =>
        {
            Ok(s.clone())
        }
        _ => Err(ParseError::invalid(format!(
            "{name} must be a job id as `generate` returned it (j followed by hex digits)"
        ))),
    }
}

/// Today's lucky discount, or 0 if the player has not drawn today.
fn discount_today(d: &Draft, now_ms: i64) -> u8 {
    if d.state.lucky_day == Some(utc_day(now_ms)) {
        d.state.lucky_pct
    } else {
        0
    }
}

/// Decides a generation command on the player's draft.
pub fn decide(
    mut d: Draft,
    key: UserKey,
    command: &GenerationCommand,
    ctx: &Context<'_>,
) -> Result<Draft, Refusal> {
    match command {
        GenerationCommand::Credits => {
            let discount = discount_today(&d, ctx.now_ms);
            let a = allowance_of(&d, ctx)?;
            let rules = &ctx.generation.rules;
            let mut data = d.balances();
            with_holds(&mut data, &d);
            data["discount_pct"] = json!(discount);
            data["lucky_drawn_today"] = json!(d.state.lucky_day == Some(utc_day(ctx.now_ms)));
            data["prices"] = prices(&ctx.generation.workflows, discount);
            let mut free = serde_json::Map::new();
            for w in ctx.generation.workflows.iter() {
                let left = a.free_left(rules, w, ctx.now_ms).0;
                free.insert(
                    w.id.as_str().into(),
                    if left == allowance::UNLIMITED {
                        json!("unlimited")
                    } else {
                        json!(left)
                    },
                );
            }
            data["free_today"] = Value::Object(free);
            data["trial_until_ms"] = if a.on_trial(rules, ctx.now_ms) {
                json!(a.trial_ends_ms(rules))
            } else {
                Value::Null
            };
            data["vip_until_ms"] = a
                .vip_until_ms
                .filter(|_| a.is_vip(ctx.now_ms))
                .map_or(Value::Null, |u| json!(u));
            let list: Vec<String> = ctx
                .generation
                .workflows
                .iter()
                .map(|w| {
                    let left = a.free_left(rules, w, ctx.now_ms).0;
                    let price = credits::discounted(w.price, discount);
                    if left == allowance::UNLIMITED {
                        format!("{} {price} (free: VIP)", w.id)
                    } else if left > 0 {
                        format!("{} {price} ({left} free today)", w.id)
                    } else {
                        format!("{} {price}", w.id)
                    }
                })
                .collect();
            let status = if a.is_vip(ctx.now_ms) {
                " · VIP"
            } else if a.on_trial(rules, ctx.now_ms) {
                " · trial"
            } else {
                ""
            };
            let held = match d.state.credits_held {
                0 => String::new(),
                h => format!(
                    " ({h} held by queued jobs, {} available)",
                    d.state.credits_available()
                ),
            };
            let msg = format!(
                "{} credits{held}{status} · today's discount {discount}% · {}",
                d.state.credits,
                list.join(" · ")
            );
            Ok(d.with(data, msg))
        }
        GenerationCommand::Lucky => {
            let today = utc_day(ctx.now_ms);
            if d.state.lucky_day == Some(today) {
                let next_midnight = (i64::from(today) + 1) * 86_400_000;
                return Err(Refusal::new(
                    ErrorCode::AlreadyClaimed,
                    format!(
                        "You already drew today ({}% off); next draw in {} minutes (UTC midnight).",
                        d.state.lucky_pct,
                        (next_midnight - ctx.now_ms + 59_999) / 60_000
                    ),
                ));
            }
            let tier = ctx.generation.lucky.draw(ctx.draw);
            let pct = tier.discount_pct;
            d.state.lucky_day = Some(today);
            d.state.lucky_pct = pct;
            d.touch();
            let mut data = d.balances();
            data["tier"] = json!(tier.name);
            data["discount_pct"] = json!(pct);
            data["prices"] = prices(&ctx.generation.workflows, pct);
            Ok(d.with(
                data,
                format!(
                    "Lucky draw: {}! {pct}% off generation for the rest of today (UTC).",
                    tier.name
                ),
            ))
        }
        GenerationCommand::Generate {
            workflow,
            prompt,
            image,
            notify,
        } => {
            let mut a = allowance_of(&d, ctx)?;
            let chosen = a.chosen(ctx.now_ms);
            let Some(workflow) = workflow.as_deref().or(chosen.map(|w| w.as_str())) else {
                return Err(Refusal::new(
                    ErrorCode::NotFound,
                    "Choose a workflow first (generate_choose, or /generate).",
                ));
            };
            let def = ctx.generation.workflows.get(workflow).ok_or_else(|| {
                Refusal::new(
                    ErrorCode::NotFound,
                    format!(
                        "There is no workflow {workflow:?}; this server offers {}.",
                        ctx.generation
                            .workflows
                            .ids()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?;
            if def.takes_image && image.is_none() {
                return Err(Refusal::new(
                    ErrorCode::InvalidArgument,
                    format!(
                        "{} needs an input picture: upload one and pass its id as image.",
                        def.name
                    ),
                ));
            }
            if !def.takes_image && image.is_some() {
                return Err(Refusal::new(
                    ErrorCode::InvalidArgument,
                    format!("{} takes no input picture.", def.name),
                ));
            }
            if prompt.is_empty() && def.params.contains_key(&workflow::Param::Prompt) {
                return Err(Refusal::new(
                    ErrorCode::InvalidArgument,
                    format!("{} needs a prompt: say what to make.", def.name),
                ));
            }
            if d.state.open_jobs >= credits::MAX_OPEN_JOBS {
                return Err(Refusal::new(
                    ErrorCode::LimitReached,
                    format!(
                        "You already have {} jobs waiting or running; wait for one to finish or cancel one.",
                        d.state.open_jobs
                    ),
                ));
            }
            let discount = discount_today(&d, ctx.now_ms);
            let (left, free) = a.free_left(&ctx.generation.rules, def, ctx.now_ms);
            // A choice is used up by the job it was made for.
            let was_chosen = a.chosen.take().is_some();
            let cost = match free {
                Some(_) => {
                    a.use_one(def.id, ctx.now_ms);
                    0
                }
                // Held, not charged: the job pays only if it succeeds.
                None => {
                    let cost = credits::discounted(def.price, discount);
                    d.hold(cost)?;
                    cost
                }
            };
            if free.is_some() || was_chosen {
                d.write(Write::GenPlayer(a.clone()));
                d.state.set_allowance(a);
            }
            d.state.open_jobs += 1;
            let job = Job {
                id: format!("j{:032x}", ctx.fresh_id),
                key,
                workflow: def.id,
                prompt: prompt.clone(),
                image: image.clone(),
                cost,
                held: true,
                notify: notify.clone(),
                created_ms: ctx.now_ms,
            };
            let mut data = d.balances();
            with_holds(&mut data, &d);
            data["job_id"] = json!(job.id);
            data["workflow"] = json!(def.id.as_str());
            data["held"] = json!(cost);
            data["discount_pct"] = json!(discount);
            data["free"] = free.map_or(Value::Null, |f| json!(f.as_str()));
            let msg = match free {
                Some(f) => format!(
                    "Queued {} job {}, free ({}; {} more free today).",
                    def.name,
                    job.id,
                    f.as_str(),
                    left - 1
                ),
                None => format!(
                    "Queued {} job {}: {cost} credits held, charged only if it succeeds.",
                    def.name, job.id
                ),
            };
            d.write(Write::JobNew(job));
            Ok(d.with(data, msg))
        }
        GenerationCommand::Topup => {
            let packs: Vec<Value> = ctx
                .generation
                .packs
                .iter()
                .map(|p| json!({"id": p.id, "title": p.title, "stars": p.stars, "credits": p.credits}))
                .collect();
            let list: Vec<String> = ctx
                .generation
                .packs
                .iter()
                .map(|p| format!("{} for {} ⭐", p.title, p.stars))
                .collect();
            let msg = if list.is_empty() {
                "No credit packs are on sale.".to_owned()
            } else {
                format!("Credit packs: {}.", list.join(" · "))
            };
            let mut data = d.balances();
            data["packs"] = Value::Array(packs);
            Ok(d.with(data, msg))
        }
        GenerationCommand::Choose { workflow } => {
            let def = ctx.generation.workflows.get(workflow).ok_or_else(|| {
                Refusal::new(
                    ErrorCode::NotFound,
                    format!("There is no workflow {workflow:?}."),
                )
            })?;
            let mut a = allowance_of(&d, ctx)?;
            a.chosen = Some((def.id, ctx.now_ms));
            d.write(Write::GenPlayer(a.clone()));
            d.state.set_allowance(a);
            let needs_prompt = def.params.contains_key(&workflow::Param::Prompt);
            let next = match (def.takes_image, needs_prompt) {
                (true, true) => "Now send the picture, with what to make as its caption.",
                (true, false) => "Now send the picture.",
                (false, _) => "Now say what to make.",
            };
            let price = credits::discounted(def.price, discount_today(&d, ctx.now_ms));
            let mut data = d.balances();
            data["workflow"] = json!(def.id.as_str());
            data["takes_image"] = json!(def.takes_image);
            data["needs_prompt"] = json!(needs_prompt);
            data["price"] = json!(price);
            Ok(d.with(data, format!("{} ({price} credits). {next}", def.name)))
        }
        GenerationCommand::Vip { days, by, .. } => {
            let mut a = allowance_of(&d, ctx)?;
            let before = a.vip_until_ms.filter(|_| a.is_vip(ctx.now_ms));
            a.extend_vip(*days, ctx.now_ms);
            let after = a.vip_until_ms;
            d.write(Write::GenPlayer(a.clone()));
            d.write(Write::Audit(crate::writeset::AuditRow {
                by: by.unwrap_or(key.user),
                action: "vip",
                target: Some(key.user),
                key: "vip_until".to_owned(),
                old: day_text(before),
                new: day_text(after),
                reason: format!("{days} day(s)"),
            }));
            d.state.set_allowance(a);
            let mut data = d.balances();
            data["vip_until_ms"] = after.map_or(Value::Null, |u| json!(u));
            let msg = match after {
                Some(_) => format!("<@{}> is VIP until {}.", key.user, day_text(after)),
                None => format!("<@{}> is no longer VIP.", key.user),
            };
            Ok(d.with(data, msg))
        }
        GenerationCommand::Payment {
            payment_id,
            credits,
        } => payment::paid(d, key, payment_id, *credits),
        GenerationCommand::Chargeback {
            payment_id,
            credits,
            by,
        } => payment::charged_back(d, key, payment_id, *credits, *by),
        GenerationCommand::Jobs | GenerationCommand::Cancel { .. } => Err(Refusal::new(
            ErrorCode::Internal,
            "this command is not decided from the player's state alone",
        )),
    }
}

fn allowance_of(d: &Draft, ctx: &Context<'_>) -> Result<Allowance, Refusal> {
    let mut a = d
        .state
        .allowance()
        .cloned()
        .ok_or_else(|| Refusal::new(ErrorCode::Internal, "free jobs not read yet"))?;
    // A player seen for the first time starts their trial now.
    if a.since_ms == 0 {
        a.since_ms = ctx.now_ms;
    }
    Ok(a)
}

/// A moment as its UTC date and time, for replies and the audit log.
fn day_text(ms: Option<i64>) -> String {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(
            || "none".to_owned(),
            |t| t.format("%Y-%m-%d %H:%M UTC").to_string(),
        )
}

/// Prices of each workflow at a discount, for replies.
fn prices(workflows: &Workflows, discount: u8) -> Value {
    let mut p = serde_json::Map::new();
    for w in workflows.iter() {
        p.insert(
            w.id.as_str().into(),
            json!(credits::discounted(w.price, discount)),
        );
    }
    Value::Object(p)
}

/// Closes one of this player's queued jobs as `status`: done (with where its
/// result is), failed or cancelled. A held price is charged when the job is
/// done and released otherwise; a job charged when queued (before holds) is
/// refunded if it failed. The close is a guard: storage applies the
/// WriteSet only if the job is still queued, so each job closes once.
pub fn close_job(
    state: &UserState,
    job: &Job,
    status: JobStatus,
    result: Option<String>,
    ctx: &Context<'_>,
) -> Result<Draft, Refusal> {
    let mut d = Draft::begin(state, job.key, ctx, None)?;
    let (mut charged, mut returned) = (0, 0);
    if job.cost > 0 {
        match (job.held, status.refunds()) {
            (true, false) => {
                d.capture(job.cost, "generate")?;
                charged = job.cost;
            }
            (true, true) => {
                d.release(job.cost);
                returned = job.cost;
            }
            (false, true) => {
                d.credit(Currency::Credits, job.cost, "refund")?;
                returned = job.cost;
            }
            (false, false) => {}
        }
    }
    d.state.open_jobs = d.state.open_jobs.saturating_sub(1);
    let mut data = d.balances();
    with_holds(&mut data, &d);
    data["job_id"] = json!(job.id);
    data["workflow"] = json!(job.workflow.as_str());
    data["status"] = json!(status.as_str());
    data["charged"] = json!(charged);
    data["refunded"] = json!(returned);
    if let Some(r) = &result {
        data["result"] = json!(r);
    }
    let msg = match status {
        JobStatus::Done if charged > 0 => format!(
            "Your {} {} is ready; {charged} credits charged.",
            job.workflow.as_str(),
            job.id
        ),
        JobStatus::Done => format!("Your {} {} is ready.", job.workflow.as_str(), job.id),
        JobStatus::Cancelled => format!("Cancelled {}; {returned} credits given back.", job.id),
        _ => format!("Job {} failed; {returned} credits given back.", job.id),
    };
    d.write(Write::JobClose(JobClose {
        id: job.id.clone(),
        status,
        result,
    }));
    Ok(d.with(data, msg))
}

/// Adds what is held and what is available to a reply's balances.
fn with_holds(data: &mut Value, d: &Draft) {
    data["credits_held"] = json!(d.state.credits_held);
    data["credits_available"] = json!(d.state.credits_available());
}
