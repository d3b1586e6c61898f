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
};

use super::send::{patiently, text};
use super::TelegramDoor;

/// The payment id kokoro records for a Telegram charge.
fn payment_id(charge: &str) -> String {
    format!("tg:{charge}")
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
    pub(crate) async fn on_paid(&self, key: UserKey, chat: ChatId, paid: &SuccessfulPayment) {
        let charge = &paid.telegram_payment_charge_id.0;
        // The credits the invoice promised (a pack changed after checkout
        // does not change what was paid for).
        let credits = paid
            .invoice_payload
            .strip_prefix("pack:")
            .and_then(|p| p.split(':').nth(1))
            .and_then(|c| c.parse::<i64>().ok());
        let Some(credits) = credits else {
            tracing::error!(charge = %charge, "a Telegram payment with a payload kokoro did not write; refund it by hand");
            return;
        };
        let id = payment_id(charge);
        let kind = CommandKind::Generation(GenerationCommand::Payment {
            payment_id: id.clone(),
            credits,
        });
        let r = self.dispatch_kind(Some(&id), key, kind).await;
        if !r.ok {
            tracing::error!(charge = %charge, error = ?r.error, "a Telegram payment could not be granted yet");
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
