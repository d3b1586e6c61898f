//! After the run: quiesce, then prove from storage that nothing went wrong.
//! Every player's ledger sums to their balance, transfers conserve gold, the
//! total is explained by what was minted and burned, and every command the
//! target acknowledged as "ok" is durable. Any violation names the players.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use actors::{Runtime, UserKey};

use super::driver::Recording;
use super::report::InvariantResult;
use super::target::Target;

/// The in-process check: reads the database directly.
pub async fn check_store(rt: &Runtime, rec: &Recording) -> anyhow::Result<InvariantResult> {
    let mut out = InvariantResult::default();
    rt.settle(Duration::from_secs(60)).await?;
    let audit = rt.audit().await?;
    out.ledger = audit
        .by_reason
        .iter()
        .map(|((c, r), v)| (format!("{c}:{r}"), *v))
        .collect();
    out.checked.push(format!(
        "ledger: {} players, {} gold (welcome {} + daily {} + purchases {}), {} transfers in flight",
        audit.users,
        audit.gold_total,
        audit.ledger(actors::domain::Currency::Gold, "welcome"),
        audit.ledger(actors::domain::Currency::Gold, "daily"),
        audit.ledger(actors::domain::Currency::Gold, "buy"),
        audit.pending_transfers
    ));
    let credits = |reason| audit.ledger(actors::domain::Currency::Credits, reason);
    out.checked.push(format!(
        "credits: {} in balances ({} held by queued jobs) = welcome {} + daily {} + top-ups {} − jobs charged {} + refunds {} (every charge and refund proven from the jobs)",
        audit.credits_total,
        audit.credits_held,
        credits("welcome"),
        credits("daily"),
        credits("topup"),
        -credits("generate"),
        credits("refund"),
    ));
    let gems = |reason| audit.ledger(actors::domain::Currency::Gems, reason);
    out.checked.push(format!(
        "collection: {} gems held = welcome {} + streaks {} − summons {} (pity counters and characters proven from the summon log)",
        audit.gems_total,
        gems("welcome"),
        gems("daily_streak"),
        -gems("summon"),
    ));
    out.checked.push(format!(
        "roleplay: {} characters, {} XP (every character's XP proven by its daily tallies)",
        audit.rp_characters, audit.rp_xp,
    ));
    out.violations.extend(audit.violations());
    let mut named: BTreeSet<String> = audit
        .mismatched
        .iter()
        .chain(&audit.negative)
        .map(ToString::to_string)
        .collect();

    let stored: HashSet<(UserKey, String)> = rt.store().command_ids().await?.into_iter().collect();
    let missing: Vec<&(UserKey, String)> = rec
        .acked_writes
        .iter()
        .filter(|k| !stored.contains(*k))
        .collect();
    out.checked.push(format!(
        "durability: {} acknowledged writes looked up, {} missing",
        rec.acked_writes.len(),
        missing.len()
    ));
    if !missing.is_empty() {
        out.violations.push(format!(
            "{} acknowledged command(s) are not in storage, e.g. {}",
            missing.len(),
            missing
                .iter()
                .take(5)
                .map(|(k, id)| format!("{id} ({k})"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        named.extend(missing.iter().map(|(k, _)| k.to_string()));
    }
    let distinct: HashSet<&(UserKey, String)> = rec.acked_writes.iter().collect();
    if distinct.len() != rec.acked_writes.len() {
        out.violations
            .push("a command id was acknowledged twice".into());
    }
    out.users = named.into_iter().take(100).collect();
    Ok(out)
}

/// The HTTP check: without access to the server's database, replay a sample
/// of acknowledged commands; a durable command answers with its first reply.
pub async fn check_by_replay(target: &Target, rec: &Recording) -> InvariantResult {
    let mut out = InvariantResult::default();
    let mut named = BTreeSet::new();
    let mut changed = 0;
    for (command, first) in &rec.acked_sample {
        let again = target.send(command).await;
        if &again != first {
            changed += 1;
            named.insert(command.key.to_string());
        }
    }
    out.checked.push(format!("durability by replay: {} acknowledged commands re-sent with their ids, {} answered differently", rec.acked_sample.len(), changed));
    if changed > 0 {
        out.violations.push(format!(
            "{changed} acknowledged command(s) did not return their first reply when retried"
        ));
    }
    out.users = named.into_iter().take(100).collect();
    out
}
