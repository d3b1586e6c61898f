//! Credits bought and charged back, as the payment provider's webhook
//! reports them (the HTTP front door checks its signature and sends these
//! commands as an admin; players cannot). The command id is the provider's
//! payment id, and the payment row is a guard, so a replayed webhook adds
//! nothing: the row lands once, with its ledger row, in one transaction.
//!
//! A chargeback takes back what the player still has available, never
//! more: the balance may reach zero (or what queued jobs hold) but not go
//! below, and what could not be taken is recorded on the payment as `owed`.

use serde_json::json;

use crate::domain::Currency;
use crate::game::draft::{Draft, Refusal};
use crate::ids::UserKey;
use crate::writeset::{PaymentRefund, Write};

pub use crate::game::generation::credits::MAX_CREDITS;

pub fn paid(mut d: Draft, key: UserKey, payment_id: &str, credits: i64) -> Result<Draft, Refusal> {
    d.credit(Currency::Credits, credits, "topup")?;
    d.write(Write::PaymentIn {
        provider_id: payment_id.to_owned(),
        credits,
    });
    let mut data = d.balances();
    data["payment_id"] = json!(payment_id);
    data["credited"] = json!(credits);
    let msg = format!(
        "<@{}> bought {credits} credits; they now have {}.",
        key.user, d.state.credits
    );
    Ok(d.with(data, msg))
}

pub fn charged_back(
    mut d: Draft,
    key: UserKey,
    payment_id: &str,
    credits: i64,
    by: Option<crate::ids::UserId>,
) -> Result<Draft, Refusal> {
    let before = d.state.credits;
    // Credits held by queued jobs are spoken for: taking them would leave
    // a job that succeeds unable to pay.
    let taken = credits.min(d.state.credits_available()).max(0);
    if taken > 0 {
        d.debit(Currency::Credits, taken, "chargeback")?;
    }
    let owed = credits - taken;
    d.write(Write::PaymentRefund(PaymentRefund {
        provider_id: payment_id.to_owned(),
        clawed_back: taken,
        owed,
    }));
    // An admin's refund is theirs to answer for.
    if let Some(admin) = by {
        d.write(Write::Audit(crate::writeset::AuditRow {
            by: admin,
            action: "refund",
            target: Some(key.user),
            key: "credits".to_owned(),
            old: before.to_string(),
            new: d.state.credits.to_string(),
            reason: format!("payment {payment_id} refunded ({credits} credits, {owed} owed)"),
        }));
    }
    let mut data = d.balances();
    data["payment_id"] = json!(payment_id);
    data["clawed_back"] = json!(taken);
    data["owed"] = json!(owed);
    let msg = format!(
        "Payment {payment_id} of <@{}> was charged back: {taken} credits taken back, {owed} owed.",
        key.user
    );
    Ok(d.with(data, msg))
}
