//! Credits bought with Telegram Stars: an invoice per pack (currency `XTR`,
//! no provider token), the pre-checkout answered at once (Telegram cancels
//! a purchase not answered within 10 seconds), credits granted on
//! `successful_payment` exactly once, keyed by Telegram's charge id, and an
//! admin's refund (`refundStarPayment`) debited once by the same key.
//!
//! The invoice's payload names the pack and the credits it buys
//! (`pack:{id}:{credits}`); only this bot can issue its invoices, so what
//! comes back is what it sent, and a pack changed since is refused at
//! checkout, before the player pays.

use actors::game::generation::GenerationCommand;
use actors::{CommandKind, UserKey};
use teloxide::prelude::*;
use teloxide::types::{
    ChatId, LabeledPrice, PreCheckoutQuery, SuccessfulPayment, TelegramTransactionId,
    TransactionPartner, TransactionPartnerUserKind,
};

use super::send::{patiently, text};
use super::{Handled, TelegramDoor};

/// The payment id kokoro records for a Telegram charge.
fn payment_id(charge: &str) -> String {
    format!("tg:{charge}")
}

/// The credits an invoice's payload promised (a pack changed after
/// checkout does not change what was paid for).
fn credits_of(payload: &str) -> Option<i64> {
    payload
        .strip_prefix("pack:")
        .and_then(|p| p.split(':').nth(1))
        .and_then(|c| c.parse::<i64>().ok())
        .filter(|c| (1..=actors::game::generation::payment::MAX_CREDITS).contains(c))
}

/// How often a node not holding the bot's slot looks whether it does now.
const LEASE_LOOK: std::time::Duration = std::time::Duration::from_secs(1);

/// Reconciles at once, then every `every`, for as long as the door runs.
pub(crate) async fn reconcile_every(
    door: std::sync::Arc<TelegramDoor>,
    every: std::time::Duration,
) {
    loop {
        // Cluster mode: the node that holds the bot's slot reconciles, at
        // once when it takes the slot (as at a start), then every `every`.
        if !door.runtime.serves_guild(door.guild) {
            tokio::time::sleep(every.min(LEASE_LOOK)).await;
            continue;
        }
        match door.reconcile().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(granted = n, "Stars reconciliation granted payments"),
            Err(e) => tracing::warn!(error = %e, "could not read the bot's Star transactions"),
        }
        tokio::time::sleep(every).await;
    }
}

impl TelegramDoor {
    pub(crate) async fn send_invoice(&self, chat: ChatId, pack: &str) {
        let Some(p) = self.runtime.config().generation.packs.get(pack).cloned() else {
            self.say(
                chat,
                "That pack is no longer on sale; /topup shows the current ones.".to_owned(),
                None,
            )
            .await;
            return;
        };
        let sent = patiently(|| {
            self.bot
                .send_invoice(
                    chat,
                    p.title.clone(),
                    format!("{} credits for image and video generation.", p.credits),
                    format!("pack:{}:{}", p.id, p.credits),
                    "XTR",
                    [LabeledPrice::new(p.title.clone(), p.stars as u32)],
                )
                .send()
        })
        .await;
        if let Err(e) = sent {
            tracing::warn!(error = %e, pack = %p.id, "could not send a Telegram invoice");
            self.say(
                chat,
                "⏳ Could not open the payment. Try again in a moment.".to_owned(),
                None,
            )
            .await;
        }
    }

    /// Answered straight away: the pack must still be on sale at the price
    /// the invoice asked, in Stars.
    pub(crate) async fn on_pre_checkout(&self, q: PreCheckoutQuery) {
        let on_sale = self
            .pack_of(&q.invoice_payload)
            .is_some_and(|(stars, _)| q.currency == "XTR" && i64::from(q.total_amount) == stars);
        let answer = if on_sale {
            self.bot.answer_pre_checkout_query(q.id.clone(), true)
        } else {
            self.bot
                .answer_pre_checkout_query(q.id.clone(), false)
                .error_message("This pack is no longer on sale; send /topup for the current ones.")
        };
        if let Err(e) = answer.send().await {
            tracing::warn!(error = %e, "could not answer a Telegram pre-checkout");
        }
    }

    /// A pack's price in Stars and credits, from an invoice's payload, if
    /// it is still on sale as it was.
    fn pack_of(&self, payload: &str) -> Option<(i64, i64)> {
        let mut parts = payload.strip_prefix("pack:")?.split(':');
        let (id, credits) = (parts.next()?, parts.next()?.parse::<i64>().ok()?);
        let pack = self.runtime.config().generation.packs.get(id)?;
        (pack.credits == credits).then_some((pack.stars, pack.credits))
    }

    /// Grants what was bought, once: the charge id is the payment's key and
    /// the command's id, so the same payment delivered twice grants once.
    /// A grant storage cannot take yet is `Again`: the update is not
    /// confirmed, and comes back.
    pub(crate) async fn on_paid(
        &self,
        key: UserKey,
        chat: ChatId,
        paid: &SuccessfulPayment,
    ) -> Handled {
        let charge = &paid.telegram_payment_charge_id.0;
        let Some(credits) = credits_of(&paid.invoice_payload) else {
            tracing::error!(charge = %charge, "a Telegram payment with a payload kokoro did not write; refund it by hand");
            return Handled::Done;
        };
        let r = self.grant(key, charge, credits).await;
        if !r.ok {
            let again = r.error.as_ref().is_some_and(|e| e.code.is_retryable());
            tracing::error!(charge = %charge, error = ?r.error, again, "a Telegram payment could not be granted yet");
            if again {
                return Handled::Again;
            }
        }
        let line = if r.ok {
            format!(
                "Thank you! +{credits} credits; you now have {}.",
                r.data["credits"]
            )
        } else {
            "⏳ Your payment arrived; the credits are on their way. If they do not show in /credits within a minute, write to us.".to_owned()
        };
        self.say(chat, line, None).await;
        Handled::Done
    }

    /// The payment command for a charge: once per charge id, whichever
    /// path (the update, reconciliation) comes first.
    async fn grant(&self, key: UserKey, charge: &str, credits: i64) -> actors::Reply {
        let id = payment_id(charge);
        let kind = CommandKind::Generation(GenerationCommand::Payment {
            payment_id: id.clone(),
            credits,
        });
        self.dispatch_kind(Some(&id), key, kind).await
    }

    /// Reads the bot's Star transactions and grants every successful
    /// payment kokoro has no record of (its update was lost), telling the
    /// player. A payment refunded on Telegram's side is left alone.
    pub(crate) async fn reconcile(&self) -> Result<u64, teloxide::RequestError> {
        let mut incoming = Vec::new();
        let mut refunded = std::collections::HashSet::new();
        // Transactions come oldest first and only grow: the ones already
        // reconciled by this process are not read again.
        let mut offset = self.reconciled.load(std::sync::atomic::Ordering::Relaxed);
        loop {
            let page = patiently(|| {
                self.bot
                    .get_star_transactions()
                    .offset(offset)
                    .limit(100)
                    .send()
            })
            .await?;
            let n = page.transactions.len() as u32;
            for t in page.transactions {
                if let Some(TransactionPartner::User(_)) = &t.receiver {
                    refunded.insert(t.id.0.clone());
                }
                if let Some(TransactionPartner::User(u)) = t.source {
                    if let TransactionPartnerUserKind::InvoicePayment(p) = &u.kind {
                        if let Some(payload) = &p.invoice_payload {
                            incoming.push((t.id.0.clone(), u.user.clone(), payload.clone()));
                        }
                    }
                }
            }
            offset += n;
            if n < 100 {
                break;
            }
        }
        let mut granted = 0;
        for (charge, user, payload) in incoming {
            if refunded.contains(&charge) {
                continue;
            }
            let (Some(key), Some(credits)) = (self.player(&user), credits_of(&payload)) else {
                continue;
            };
            match self.runtime.store().payment(&payment_id(&charge)).await {
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => {
                    // Read again next time, from where it was.
                    tracing::warn!(error = %e, "reconciling Stars payments: storage unavailable");
                    return Ok(granted);
                }
            }
            let r = self.grant(key, &charge, credits).await;
            if r.error.as_ref().is_some_and(|e| e.code.is_retryable()) {
                return Ok(granted);
            }
            if r.ok && !r.replayed {
                granted += 1;
                metrics::counter!(actors::telemetry::TELEGRAM_PAYMENTS_RECONCILED_TOTAL)
                    .increment(1);
                tracing::warn!(charge = %charge, user = %key.user, credits, "granted a Stars payment whose update never arrived");
                let chat = ChatId(key.user.get());
                self.say(
                    chat,
                    format!(
                        "Your payment arrived: +{credits} credits; you now have {}.",
                        r.data["credits"]
                    ),
                    None,
                )
                .await;
            }
        }
        self.reconciled
            .store(offset, std::sync::atomic::Ordering::Relaxed);
        Ok(granted)
    }

    /// `/refund {user id} {charge id}`, admins only: gives the Stars back
    /// and takes back the credits, once.
    pub(crate) async fn on_refund(&self, admin: UserKey, chat: ChatId, args: &[&str]) {
        if !self.admins.contains(&admin.user.get()) {
            self.say(
                chat,
                "⚠️ Only this bot's admins may refund.".to_owned(),
                None,
            )
            .await;
            return;
        }
        let (Some(user), Some(charge)) = (
            args.first().and_then(|u| u.parse::<u64>().ok()),
            args.get(1),
        ) else {
            self.say(
                chat,
                "Usage: /refund {user id} {charge id}".to_owned(),
                None,
            )
            .await;
            return;
        };
        let payment = payment_id(charge);
        let found = match self.runtime.store().payment(&payment).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "could not read a payment");
                self.say(
                    chat,
                    "⏳ Storage is unavailable. Try again in a moment.".to_owned(),
                    None,
                )
                .await;
                return;
            }
        };
        let Some((key, credits, _)) = found.filter(|(k, _, _)| k.user.get() as u64 == user) else {
            self.say(chat, format!("⚠️ No payment {charge} by {user}."), None)
                .await;
            return;
        };
        // Telegram first: if the credits were taken and the Stars not
        // given back, the player would be out of both. A repeat finds the
        // charge refunded and goes on to the (idempotent) debit.
        let refunded = patiently(|| {
            self.bot
                .refund_star_payment(
                    teloxide::types::UserId(user),
                    TelegramTransactionId(charge.to_string()),
                )
                .send()
        })
        .await;
        match refunded {
            Ok(_) => {}
            Err(e) if e.to_string().contains("CHARGE_ALREADY_REFUNDED") => {}
            Err(e) => {
                tracing::warn!(error = %e, "Telegram refused a Stars refund");
                self.say(chat, format!("⚠️ Telegram refused the refund: {e}"), None)
                    .await;
                return;
            }
        }
        let kind = CommandKind::Generation(GenerationCommand::Chargeback {
            payment_id: payment.clone(),
            credits,
            by: Some(admin.user),
        });
        let r = self
            .dispatch_kind(Some(&format!("refund:{payment}")), key, kind)
            .await;
        tracing::info!(admin = %admin.user, payment = %payment, ok = r.ok, "Telegram Stars refund");
        self.say(chat, text(&r), None).await;
    }
}
