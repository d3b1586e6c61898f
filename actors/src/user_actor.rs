//! `UserActor`: one per resident player. It owns the player's state, takes
//! one message at a time from its bounded mailbox, decides each command with
//! the pure rules, hands the WriteSet to group commit and waits for it to be
//! durable before adopting the new state and answering. The mailbox is the
//! lock: no other code touches the state.
//!
//! Passivation (idle, evicted, or after a panic) first removes the actor from
//! the registry, then drops whatever was queued unread (answering
//! `NotDelivered`), so a new activation, which loads after this actor's last
//! commit, is the only writer from then on.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;
use tracing::Instrument;

use crate::command::{Command, CommandKind};
use crate::game::arena::entry::{EntryStatus, Fought};
use crate::game::arena::ArenaCommand;
use crate::game::economy::EconomyCommand;
use crate::game::generation::job::{JobStatus, Rendered};
use crate::game::generation::GenerationCommand;
use crate::game::guild::role_rules::{Needs, RoleChange};
use crate::game::guild::roles;
use crate::game::guild::settings::GuildSettings;
use crate::game::{self, Draft, Refusal};
use crate::group_commit::{Busy, CommitError, CommitResult};
use crate::ids::UserKey;
use crate::job_queue::{Finished, Reservation};
use crate::mailbox::{
    Answer, DebitAsk, DebitHalf, Envelope, Half, HalfAsk, Mail, Paired, Unread, Why,
};
use crate::postbox;
use crate::registry::Registry;
use crate::reply::{ErrorCode, Reply};
use crate::state::{RecentCommands, UserState};
use crate::telemetry as m;
use crate::writeset::{CommitOutcome, Transfer, WriteSet};

pub(crate) struct UserActor {
    key: UserKey,
    generation: u64,
    registry: Arc<Registry>,
    mailbox: postbox::Receiver<Mail>,
    state: UserState,
    recent: RecentCommands,
    /// The roles the last adopted commit changed, for its reply (boxed:
    /// most actors never have one).
    roles_changed: Option<Box<RoleChange>>,
    /// Cluster mode: the epoch of the slot's lease this actor was activated
    /// under (0: not in cluster mode). Its WriteSets carry it, and commit
    /// only while the lease does; once this node serves the slot under
    /// another epoch (or not at all) the actor leaves at its next mail.
    /// Four bytes, so that an idle actor stays within its allocation class:
    /// an epoch past `u32::MAX` (four billion takings of one slot) is kept
    /// as `u32::MAX`, which no lease matches, so it never writes.
    epoch: u32,
}

/// Why an actor stops; the label of the passivation metric.
#[derive(Debug, Clone, Copy)]
enum Leave {
    Idle,
    Evicted,
    Panic,
    LoadFailed,
    UnknownOutcome,
    Closed,
    /// Cluster mode: the guild's slot is no longer served by this node, or
    /// is served under another epoch than the one this actor loaded under.
    Moved,
}

impl Leave {
    fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Evicted => "evicted",
            Self::Panic => "panic",
            Self::LoadFailed => "load_failed",
            Self::UnknownOutcome => "unknown_outcome",
            Self::Closed => "closed",
            Self::Moved => "moved",
        }
    }
}

/// What handling one mail means for the actor's life.
enum Next {
    Continue,
    Leave(Leave),
}

impl UserActor {
    pub(crate) fn new(
        key: UserKey,
        generation: u64,
        registry: Arc<Registry>,
        mailbox: postbox::Receiver<Mail>,
        epoch: Option<i64>,
    ) -> Self {
        Self {
            key,
            generation,
            registry,
            mailbox,
            state: UserState::default(),
            recent: RecentCommands::default(),
            roles_changed: None,
            epoch: epoch.map_or(0, |e| u32::try_from(e).unwrap_or(u32::MAX)),
        }
    }

    /// `writes`, marked with this actor's lease epoch (cluster mode).
    fn stamped(&self, mut writes: WriteSet) -> WriteSet {
        writes.epoch = self.epoch();
        writes
    }

    fn epoch(&self) -> Option<i64> {
        (self.epoch > 0).then_some(i64::from(self.epoch))
    }

    /// Cluster mode: this node no longer serves the player's slot under
    /// the epoch this actor loaded under.
    fn moved(&self) -> bool {
        self.registry
            .shared
            .cluster
            .as_ref()
            .is_some_and(|c| c.serving_guild(self.key.guild) != self.epoch())
    }

    pub(crate) async fn run(mut self) {
        let reason = self.live().await;
        // Boxed: it runs once per life, so idle actors need not carry its space.
        Box::pin(self.leave(reason)).await;
    }

    async fn live(&mut self) -> Leave {
        let started = Instant::now();
        // Boxed: an idle actor should not carry the load future's space for life.
        match Box::pin(self.registry.shared.store.load_user(self.key)).await {
            Ok(loaded) => {
                self.state = loaded.state;
                self.recent = loaded.recent;
            }
            Err(e) => {
                tracing::warn!(user = %self.key, error = %e, "activation failed to load state");
                return Leave::LoadFailed;
            }
        }
        metrics::histogram!(m::ACTIVATION_DURATION_SECONDS).record(started.elapsed().as_secs_f64());
        // The guild's role rules are read after every commit (`adopt_state`),
        // so its settings are read now, once per guild and process; if they
        // cannot be, commits go on and the roles they change are counted.
        let guilds = &self.registry.shared.guilds;
        if guilds.published(self.key.guild).is_none() {
            let _ = Box::pin(guilds.settings(self.key.guild)).await;
        }
        // No timer here: the registry's sweeper sends `Passivate(Idle)` to
        // actors unused for the idle timeout, so an idle actor costs no timer.
        loop {
            let Ok(mail) = self.mailbox.recv().await else {
                return Leave::Closed;
            };
            // Boxed: the handler's state (~2.5 KB) lives only while one mail
            // is handled, not in every idle actor's future.
            let next = Box::pin(self.handle_mail(mail)).await;
            if let Next::Leave(reason) = next {
                return reason;
            }
        }
    }

    /// Handles one mail; what it means for the actor's life.
    async fn handle_mail(&mut self, mail: Mail) -> Next {
        match mail {
            // Only an idle actor leaves: one with mail waiting is in use.
            Mail::Passivate(why) if self.mailbox.is_empty() => Next::Leave(match why {
                Why::Idle => Leave::Idle,
                Why::Evicted => Leave::Evicted,
            }),
            Mail::Passivate(_) => Next::Continue,
            // Dropped unread (`NotDelivered`): its sender tries again, and
            // finds the slot's new owner or is told `busy`.
            mail if self.moved() => {
                drop(mail);
                Next::Leave(Leave::Moved)
            }
            mail => {
                if let Some(rules) = self.rules_needing_parts() {
                    Box::pin(self.read_rule_parts(rules)).await;
                }
                self.handle_work(mail).await
            }
        }
    }

    /// Handles one mail that is not a passivation.
    async fn handle_work(&mut self, mail: Mail) -> Next {
        self.roles_changed = None;
        match mail {
            Mail::Passivate(_) => Next::Continue,
            Mail::Command(envelope) => {
                let Envelope { body, reply, span } = *envelope;
                // A give to a lower key is coordinated by the recipient.
                match self.coordinator_of(&body) {
                    Some(recipient) => {
                        let coordinate = Mail::coordinate(body, reply, span);
                        // The recipient's mailbox is full: the give could
                        // not be seen when answered, so it is not taken;
                        // the caller retries, as for any full mailbox.
                        if let Err(Mail::Coordinate(back)) =
                            self.registry.forward(recipient, coordinate)
                        {
                            let Envelope { body, reply, .. } = *back;
                            reply.open().send(recipient_busy(body.kind.name()));
                        }
                        Next::Continue
                    }
                    None => {
                        self.handle_command(body, reply.open(), None)
                            .instrument(span)
                            .await
                    }
                }
            }
            Mail::Coordinate(envelope) => {
                let Envelope { body, reply, span } = *envelope;
                self.handle_coordinate(body, reply).instrument(span).await
            }
            Mail::Debit(ask) => {
                let DebitAsk {
                    command,
                    reply,
                    coordinator,
                    span,
                } = *ask;
                self.handle_command(command, reply.open(), Some(coordinator))
                    .instrument(span)
                    .await
            }
            Mail::Credit(envelope) => {
                let Envelope { body, reply, span } = *envelope;
                self.handle_credit(body, reply.open())
                    .instrument(span)
                    .await
            }
            Mail::Half(ask) => {
                let span = ask.span.clone();
                self.handle_half(*ask).instrument(span).await
            }
            Mail::JobDone(envelope) => {
                let Envelope { body, reply, span } = *envelope;
                self.handle_job_done(body, reply.open())
                    .instrument(span)
                    .await
            }
            Mail::Fought(envelope) => {
                let Envelope { body, reply, span } = *envelope;
                self.handle_fought(body, reply.open())
                    .instrument(span)
                    .await
            }
        }
    }

    /// Unregisters, then answers queued mail `NotDelivered` (by dropping it) so
    /// callers retry against the next activation.
    async fn leave(&mut self, reason: Leave) {
        self.registry.unregister(self.key, self.generation);
        // Unregistered: no new sender finds this mailbox. Mail already in it
        // is dropped unread (NotDelivered); mail sent by a caller that looked
        // the address up just before is dropped with the mailbox's last handle.
        while let Some(mail) = self.mailbox.try_recv() {
            if let (Leave::LoadFailed, Mail::Command(envelope)) = (reason, mail) {
                // Retrying would only fail the same way: say so at once.
                let Envelope { body, reply, .. } = *envelope;
                reply.open().send(Reply::error(
                    body.kind.name(),
                    ErrorCode::StorageUnavailable,
                    "could not load the player's state; try again shortly",
                ));
            }
        }
        metrics::counter!(m::PASSIVATIONS_TOTAL, "reason" => reason.as_str()).increment(1);
    }

    fn context<'a>(&'a self, guild: &'a GuildSettings) -> game::Context<'a> {
        let shared = &self.registry.shared;
        game::Context {
            guild,
            now_ms: (shared.config.clock)(),
            catalogue: &shared.config.catalogue,
            roster: &shared.config.roster,
            generation: &shared.config.generation,
            starting_gold: shared.config.starting_gold,
            starting_credits: shared.config.starting_credits,
            starting_gems: shared.config.starting_gems,
            fresh_id: rand::random(),
            draw: rand::random(),
        }
    }

    /// The recipient's key, for a give this actor's player sends to a lower
    /// key: the recipient's actor coordinates those (see `commit_give`).
    fn coordinator_of(&self, command: &Command) -> Option<UserKey> {
        match &command.kind {
            CommandKind::Economy(EconomyCommand::Give { to, .. }) => {
                let recipient = UserKey::new(self.key.guild, *to);
                (recipient < self.key).then_some(recipient)
            }
            _ => None,
        }
    }

    /// `via`: the actor coordinating this command, a give it receives, to
    /// which the debit's WriteSet goes instead of to group commit.
    async fn handle_command(
        &mut self,
        command: Command,
        answer: Answer,
        via: Option<oneshot::Sender<DebitHalf>>,
    ) -> Next {
        let name = command.kind.name();
        let fingerprint = command.id.as_ref().map(|id| id.fingerprint());
        // A fingerprint seen before is probably a retry: answer the first reply.
        // (A fingerprint collision finds no stored reply and carries on.)
        if fingerprint.is_some_and(|fp| self.recent.contains(fp)) {
            if let Some(first) = self.first_reply(&command).await {
                self.answer_replay(first, answer);
                return Next::Continue;
            }
        }
        // The parts of the state read on demand (the collection, free jobs,
        // roleplay characters) are read once, when a command first needs
        // them; from then on this actor keeps them with the rest.
        // Checked before boxing: most commands need nothing read, and pay
        // no allocation for it.
        if self.lacks_on_demand(&command.kind) {
            if let Err(e) = Box::pin(self.read_on_demand(&command.kind)).await {
                tracing::warn!(user = %self.key, error = %e, "could not read a player's state");
                answer.send(Reply::error(
                    name,
                    ErrorCode::StorageUnavailable,
                    "storage is unavailable; nothing was changed, retry shortly",
                ));
                return Next::Continue;
            }
        }
        // The guild's settings, for the commands they shape: a snapshot,
        // read from storage only the first time this guild is seen.
        let guild = if command.kind.needs_guild_settings() {
            match self.registry.shared.guilds.settings(self.key.guild).await {
                Some(g) => g,
                None => {
                    answer.send(Reply::error(
                        name,
                        ErrorCode::StorageUnavailable,
                        "could not read the server's settings; nothing was changed, retry shortly",
                    ));
                    return Next::Continue;
                }
            }
        } else {
            fallback_settings()
        };
        // A job holds its place in the queue before anything is charged, so
        // a full queue refuses it with nothing written.
        let reservation = match &command.kind {
            CommandKind::Generation(GenerationCommand::Generate {
                workflow, image, ..
            }) => {
                if let Some(id) = image {
                    let uploads = self.registry.shared.config.uploads.as_ref();
                    if uploads.and_then(|u| u.path(self.key, id)).is_none() {
                        answer.send(refusal_reply(
                            name,
                            Refusal::new(
                                ErrorCode::NotFound,
                                format!("You have no upload {id} (uploads are kept for a day); upload the picture again."),
                            ),
                        ));
                        return Next::Continue;
                    }
                }
                // No workflow named: the one the player chose (the rules
                // refuse, with nothing reserved, if there is none).
                let now_ms = (self.registry.shared.config.clock)();
                let chosen = self.state.allowance().and_then(|a| a.chosen(now_ms));
                let Some(workflow) = workflow.as_deref().or(chosen.map(|w| w.as_str())) else {
                    answer.send(refusal_reply(
                        name,
                        Refusal::new(
                            ErrorCode::NotFound,
                            "Choose a workflow first (generate_choose, or /generate).",
                        ),
                    ));
                    return Next::Continue;
                };
                match self.reserve(workflow) {
                    Ok(r) => Some(r),
                    Err(refusal) => {
                        answer.send(refusal_reply(name, refusal));
                        return Next::Continue;
                    }
                }
            }
            _ => None,
        };
        let decided = match &command.kind {
            CommandKind::Generation(GenerationCommand::Cancel { job_id }) => {
                Ok(self.decide_cancel(job_id, &command).await)
            }
            CommandKind::Arena(ArenaCommand::Leave) => Ok(self.decide_arena_leave(&command).await),
            _ => std::panic::catch_unwind(AssertUnwindSafe(|| {
                game::decide(
                    &self.state,
                    self.key,
                    &command.kind,
                    command.id.clone(),
                    &self.context(&guild),
                )
            })),
        };
        let draft = match decided {
            Err(_) => {
                tracing::error!(user = %self.key, command = name, "rule panicked; dropping the player's in-memory state");
                answer.send(Reply::error(
                    name,
                    ErrorCode::Internal,
                    "internal error; nothing was changed",
                ));
                return Next::Leave(Leave::Panic);
            }
            Ok(Err(refusal)) => {
                // A retry of a command that succeeded long ago may now be refused
                // by the rules (already claimed...): answer the first reply instead.
                if command.id.is_some() && self.recent.incomplete {
                    if let Some(first) = self.first_reply(&command).await {
                        self.answer_replay(first, answer);
                        return Next::Continue;
                    }
                }
                answer.send(refusal_reply(name, refusal));
                return Next::Continue;
            }
            Ok(Ok(draft)) => draft,
        };
        let Draft {
            state,
            mut writes,
            data,
            message,
            roles: handed,
        } = draft;
        let mut reply = Reply::ok(name, data, message);
        if writes.is_empty() {
            self.hand_roles(&mut reply, None, &handed);
            answer.send(reply);
            return Next::Continue;
        }
        if command.id.is_some() {
            writes.reply_json = serde_json::to_string(&reply).ok();
        }
        // What the other actors hear of once this is durable.
        let transfer = writes.transfer_out().cloned();
        let job = writes.job_new().cloned();
        let entered = writes.arena_new().cloned();
        let cancelled = writes.job_close().map(|c| c.id.clone());
        let left = writes
            .arena_close()
            .filter(|c| c.to == EntryStatus::Left)
            .map(|c| c.id.clone());
        // A give to a player of a higher key commits its credit in the
        // same transaction (see `commit_give`); `credited` says it did.
        let committed = match (&transfer, via) {
            (Some(_), Some(coordinator)) => {
                self.commit_debit_via(state, writes, coordinator, name)
                    .await
            }
            (Some(t), None) if self.key < UserKey::new(t.guild, t.to) => {
                self.commit_give(state, writes, t, name).await
            }
            _ => self.commit(state, writes, name).await.map(|o| (o, false)),
        };
        match committed {
            Ok((CommitOutcome::Applied, credited)) => {
                if let Some(fp) = fingerprint {
                    self.recent.remember(fp);
                }
                let changed = self.roles_changed.take();
                self.hand_roles(&mut reply, changed, &handed);
                // The system actors hear first, then the player: a `jobs`
                // or `arena_status` sent after this reply reaches their
                // mailbox after the job or the entry (both are plain sends).
                let queues = &self.registry.shared.queues;
                if let (Some(job), Some(place)) = (job, reservation) {
                    if let Some(q) = queues.get(job.workflow) {
                        q.submit(place, job);
                    }
                }
                if let Some(id) = cancelled {
                    for q in queues.iter() {
                        q.forget(&id);
                    }
                }
                let arena = &self.registry.shared.arena;
                if let Some(entry) = entered {
                    arena.enter(entry);
                }
                if let Some(id) = left {
                    arena.forget(self.key.guild, &id);
                }
                // A give is answered once its credit is durable too, so
                // the recipient never reads a balance older than "sent".
                match transfer {
                    Some(t) if !credited => self.registry.credit_then_answer(t, answer, reply),
                    Some(_) => {
                        // Credited in the debit's own transaction: no wait at all.
                        metrics::histogram!(m::TRANSFER_CREDIT_SECONDS).record(0.0);
                        answer.send(reply)
                    }
                    None => answer.send(reply),
                }
                Next::Continue
            }
            Ok((CommitOutcome::AlreadyApplied, _)) => {
                // Either this command id was recorded before (a retry: answer
                // the first reply), or what it closes (a job, an arena entry)
                // moved on first: a finished job, a match. Nothing was written.
                let stored = match &command.id {
                    Some(id) => Box::pin(self.registry.shared.store.find_reply(self.key, id)).await,
                    None => Ok(None),
                };
                let reply = match stored {
                    Ok(Some(json)) => {
                        if let Some(fp) = fingerprint {
                            self.recent.remember(fp);
                        }
                        match serde_json::from_str(&json) {
                            Ok(first) => {
                                self.answer_replay(Reply::replay(first), answer);
                                return Next::Continue;
                            }
                            Err(_) => Reply::error(
                                name,
                                ErrorCode::Internal,
                                "the first reply is unreadable",
                            ),
                        }
                    }
                    Ok(None) => lost_race(name),
                    Err(e) => {
                        tracing::warn!(user = %self.key, error = %e, "could not read a stored reply");
                        Reply::error(
                            name,
                            ErrorCode::StorageUnavailable,
                            "could not read the first reply; retry",
                        )
                    }
                };
                answer.send(reply);
                Next::Continue
            }
            Err(failure) => failure.answer(answer),
        }
    }

    async fn handle_credit(&mut self, transfer: Transfer, answer: Answer) -> Next {
        let decided = game::economy::receive(
            &self.state,
            self.key,
            &transfer,
            &self.context(GuildSettings::fallback()),
        );
        if let Err(refusal) = &decided {
            tracing::error!(user = %self.key, transfer = %transfer.id, reason = %refusal.message, "credit refused; transfer stays pending");
        }
        self.apply("receive", decided, answer).await
    }

    /// Commits what a queue's result (a credit, a finished job, a battle)
    /// decided, and answers whoever delivered it. Storage applies each such
    /// WriteSet at most once, so "already applied" is a success too.
    async fn apply(
        &mut self,
        name: &'static str,
        decided: Result<Draft, Refusal>,
        answer: Answer,
    ) -> Next {
        // Battles and jobs hand no roles of their own: only their state's.
        let Draft {
            state,
            writes,
            data,
            message,
            ..
        } = match decided {
            Ok(d) => d,
            Err(refusal) => {
                answer.send(refusal_reply(name, refusal));
                return Next::Continue;
            }
        };
        let reply = Reply::ok(name, data, message);
        match self.commit(state, writes, name).await {
            Ok(_) => {
                answer.send(reply);
                Next::Continue
            }
            Err(failure) => failure.answer(answer),
        }
    }

    /// Decides this player's half of a give another player is committing
    /// now, hands it over, and waits for how the pair's commit ended: the
    /// credit is this actor's one WriteSet in flight, so it takes no other
    /// mail meanwhile.
    async fn handle_half(&mut self, ask: HalfAsk) -> Next {
        let HalfAsk {
            transfer, reply, ..
        } = ask;
        if reply.is_closed() {
            // The sender stopped waiting and committed its debit alone.
            return Next::Continue;
        }
        let Draft { state, writes, .. } = match self.decide_paired_credit(&transfer) {
            Ok(d) => d,
            Err(refusal) => {
                let _ = reply.send(Err(refusal));
                return Next::Continue;
            }
        };
        let (adopt, outcome) = oneshot::channel();
        let writes = self.stamped(writes);
        if reply.send(Ok(Half { writes, adopt })).is_err() {
            return Next::Continue;
        }
        self.adopt_half(state, outcome.await)
    }

    /// This player's credit of a give committed with its debit.
    fn decide_paired_credit(&self, transfer: &Transfer) -> Result<Draft, Refusal> {
        game::economy::receive_with_debit(
            &self.state,
            self.key,
            transfer,
            &self.context(GuildSettings::fallback()),
        )
    }

    /// Adopts this player's half of a give once the pair is durable;
    /// leaves (to reload) when the pair may or may not have landed.
    fn adopt_half(
        &mut self,
        state: UserState,
        outcome: Result<CommitResult, oneshot::error::RecvError>,
    ) -> Next {
        match outcome {
            Ok(Ok(CommitOutcome::Applied)) => {
                self.adopt_state(state);
                Next::Continue
            }
            Ok(Ok(CommitOutcome::AlreadyApplied))
            | Ok(Err(CommitError::Unavailable(_) | CommitError::Rejected(_))) => Next::Continue,
            Ok(Err(CommitError::Unknown(_))) | Err(_) => Next::Leave(Leave::UnknownOutcome),
            Ok(Err(CommitError::Fenced)) => Next::Leave(Leave::Moved),
        }
    }

    /// Takes `state` as the player's, once its commit is durable, and hands
    /// the roles the guild's rules say it changes to the role desk, in the
    /// order of this player's commits.
    fn adopt_state(&mut self, state: UserState) {
        let shared = &self.registry.shared;
        match shared.guilds.published(self.key.guild) {
            Some(g) => {
                let now_ms = (shared.config.clock)();
                let roster = &shared.config.roster;
                if let Some(change) =
                    roles::changed(&g.role_rules, &self.state, &state, roster, &g, now_ms)
                {
                    shared.roles.post(self.key, &change);
                    self.roles_changed = Some(Box::new(change));
                }
            }
            None => metrics::counter!(m::ROLE_RULES_UNREAD_TOTAL).increment(1),
        }
        self.state = state;
    }

    /// Hands the front door the roles a command's draft names (its new
    /// state's changes, `changed`, went already, in `adopt_state`), and
    /// tells the caller both in `data.roles`.
    fn hand_roles(&self, reply: &mut Reply, changed: Option<Box<RoleChange>>, handed: &RoleChange) {
        let mut told = changed.map(|c| *c).unwrap_or_default();
        if !handed.is_empty() {
            self.registry.shared.roles.post(self.key, handed);
            told.then(handed);
        }
        if let (false, Some(data)) = (told.is_empty(), reply.data.as_object_mut()) {
            data.insert("roles".to_owned(), told.to_json());
        }
    }

    /// The guild's role rules, if they read a part of the state kept on
    /// demand that this actor has not read yet.
    fn rules_needing_parts(&self) -> Option<Needs> {
        let g = self.registry.shared.guilds.published(self.key.guild)?;
        let n = g.role_rules.needs();
        ((n.collection && self.state.collection().is_none())
            || (n.roleplay && self.state.roleplay().is_none())
            || (n.allowance && self.state.allowance().is_none()))
        .then_some(n)
    }

    /// Reads the parts the role rules need, so that a rule over them is
    /// decided before and after each commit. A part that cannot be read
    /// leaves its rules undecided (neither added nor removed) until it is.
    async fn read_rule_parts(&mut self, n: Needs) {
        let store = &self.registry.shared.store;
        let result = async {
            if n.collection && self.state.collection().is_none() {
                let c = store.load_collection(self.key).await?;
                self.state.set_collection(c);
            }
            if n.allowance && self.state.allowance().is_none() {
                let a = store.load_allowance(self.key).await?;
                self.state.set_allowance(a);
            }
            if n.roleplay && self.state.roleplay().is_none() {
                let r = store.load_roleplay(self.key).await?;
                self.state.set_roleplay(r);
            }
            Ok::<(), crate::store::StoreError>(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(user = %self.key, error = %e, "could not read what the role rules need");
        }
    }

    /// Whether `kind` needs a part of the state kept on demand not read yet.
    fn lacks_on_demand(&self, kind: &CommandKind) -> bool {
        (kind.needs_collection() && self.state.collection().is_none())
            || (kind.needs_allowance() && self.state.allowance().is_none())
            || (kind.needs_roleplay() && self.state.roleplay().is_none())
    }

    /// Reads what `kind` needs of the parts of the state kept on demand.
    async fn read_on_demand(&mut self, kind: &CommandKind) -> Result<(), crate::store::StoreError> {
        let store = &self.registry.shared.store;
        if kind.needs_collection() && self.state.collection().is_none() {
            let c = store.load_collection(self.key).await?;
            self.state.set_collection(c);
        }
        if kind.needs_allowance() && self.state.allowance().is_none() {
            let a = store.load_allowance(self.key).await?;
            self.state.set_allowance(a);
        }
        if kind.needs_roleplay() && self.state.roleplay().is_none() {
            let r = store.load_roleplay(self.key).await?;
            self.state.set_roleplay(r);
        }
        Ok(())
    }

    /// Holds a place in `workflow`'s queue, or says why not.
    fn reserve(&self, workflow: &str) -> Result<Reservation, Refusal> {
        let queues = &self.registry.shared.queues;
        if queues.is_empty() {
            return Err(Refusal::new(
                ErrorCode::Disabled,
                "image and video generation is not enabled on this server",
            ));
        }
        let Some(queue) = queues.find(workflow) else {
            let ids: Vec<&str> = queues.iter().map(|q| q.workflow().as_str()).collect();
            return Err(Refusal::new(
                ErrorCode::NotFound,
                format!(
                    "There is no workflow {workflow:?}; this server offers {}.",
                    ids.join(", ")
                ),
            ));
        };
        queue.try_reserve().ok_or_else(|| {
            Refusal::new(
                ErrorCode::Busy,
                format!("the {} queue is full; try again in a few minutes", workflow),
            )
        })
    }

    /// Cancelling reads the job from storage (this actor is the only writer
    /// of its player's jobs, so what it reads is current), then refunds it.
    async fn decide_cancel(&self, job_id: &str, command: &Command) -> Result<Draft, Refusal> {
        let stored = match Box::pin(self.registry.shared.store.job(job_id)).await {
            Ok(Some(s)) if s.job.key == self.key => s,
            // Someone else's job reads as no job at all.
            Ok(_) => {
                return Err(Refusal::new(
                    ErrorCode::NotFound,
                    format!("You have no job {job_id}."),
                ))
            }
            Err(e) => {
                tracing::warn!(user = %self.key, error = %e, "could not read a job to cancel");
                return Err(Refusal::new(
                    ErrorCode::StorageUnavailable,
                    "storage is unavailable; nothing was changed, retry shortly",
                ));
            }
        };
        if stored.status != JobStatus::Queued {
            return Err(Refusal::new(
                ErrorCode::AlreadyFinished,
                format!("Job {job_id} is already {}.", stored.status.as_str()),
            ));
        }
        let mut draft = game::generation::close_job(
            &self.state,
            &stored.job,
            JobStatus::Cancelled,
            None,
            &self.context(GuildSettings::fallback()),
        )?;
        draft.writes.command_id = command.id.clone();
        Ok(draft)
    }

    /// Leaving reads the player's newest entry: only a waiting one can be
    /// left. Storage re-checks that it is still waiting when it commits.
    async fn decide_arena_leave(&self, command: &Command) -> Result<Draft, Refusal> {
        let newest = match Box::pin(self.registry.shared.store.arena_of(self.key, 1)).await {
            Ok(mut e) => e.pop(),
            Err(e) => {
                tracing::warn!(user = %self.key, error = %e, "could not read the arena entry");
                return Err(Refusal::new(
                    ErrorCode::StorageUnavailable,
                    "storage is unavailable; nothing was changed, retry shortly",
                ));
            }
        };
        match newest {
            Some(s) if s.status == EntryStatus::Waiting => {
                let mut draft = game::arena::leave(
                    &self.state,
                    &s.entry,
                    &self.context(GuildSettings::fallback()),
                )?;
                draft.writes.command_id = command.id.clone();
                Ok(draft)
            }
            Some(s) if s.status == EntryStatus::Matched => Err(Refusal::new(
                ErrorCode::AlreadyFinished,
                "You have been matched; the battle's result is on its way.",
            )),
            _ => Err(Refusal::new(
                ErrorCode::NotFound,
                "You are not in the arena.",
            )),
        }
    }

    /// Pays this player's side of a battle, once.
    async fn handle_fought(&mut self, fought: Fought, answer: Answer) -> Next {
        let decided = game::arena::reward(
            &self.state,
            &fought,
            &self.context(GuildSettings::fallback()),
        );
        if let Err(refusal) = &decided {
            tracing::error!(user = %self.key, battle = %fought.battle_id, reason = %refusal.message, "could not pay a battle");
        }
        self.apply("arena_result", decided, answer).await
    }

    /// Records how a job of this player ended: its result, or its refund.
    /// Storage closes a job once, so a repeated report changes nothing.
    async fn handle_job_done(&mut self, finished: Finished, answer: Answer) -> Next {
        let (status, result) = match finished.rendered {
            Rendered::Done(url) => (JobStatus::Done, url),
            Rendered::Failed(why) => (JobStatus::Failed, why),
        };
        let decided = game::generation::close_job(
            &self.state,
            &finished.job,
            status,
            Some(result),
            &self.context(GuildSettings::fallback()),
        );
        if let Err(refusal) = &decided {
            tracing::error!(user = %self.key, job = %finished.job.id, reason = %refusal.message, "could not close a job");
        }
        self.apply("job_done", decided, answer).await
    }

    /// Hands a draft's writes to group commit, waits until durable, and only
    /// then adopts the draft's state. On any failure the state is unchanged.
    async fn commit(
        &mut self,
        state: UserState,
        writes: WriteSet,
        name: &str,
    ) -> Result<CommitOutcome, Failure> {
        let durable = self.registry.shared.commit.submit(self.stamped(writes));
        self.settle(state, durable, name, None).await
    }

    /// Commits a give's debit and, in the same transaction, the recipient's
    /// credit, which their actor decides and hands back (`handle_half`):
    /// once this answers, the recipient reads the gold. `true` if the credit
    /// went with the debit; otherwise the debit committed alone (their half
    /// did not come in time, or was refused) and the credit follows by
    /// delivery. A recipient whose mailbox is full gets nothing written:
    /// the give is answered `busy`.
    ///
    /// Only towards a higher key: the sender waits for the recipient's actor
    /// here, and the recipient, while its half is out, waits only for a
    /// sender that already holds every half it needs. Waits for a half thus
    /// only ever go up in key order, so no two actors can wait for each
    /// other in a circle.
    async fn commit_give(
        &mut self,
        state: UserState,
        writes: WriteSet,
        transfer: &Transfer,
        name: &str,
    ) -> Result<(CommitOutcome, bool), Failure> {
        let Some(asked) = self.registry.ask_half(transfer) else {
            // Nothing is written: the caller retries (a debit alone would
            // be answered unseen).
            return Err(Failure::Reply(recipient_busy(name)));
        };
        let half = wait_for_half(asked).await;
        let Some(Half {
            writes: theirs,
            adopt,
        }) = half
        else {
            metrics::counter!(m::GIVE_CREDITS_TOTAL, "path" => "after").increment(1);
            return self.commit(state, writes, name).await.map(|o| (o, false));
        };
        metrics::counter!(m::GIVE_CREDITS_TOTAL, "path" => "paired").increment(1);
        let durable = self
            .registry
            .shared
            .commit
            .submit_pair(self.stamped(writes), theirs);
        self.settle(state, durable, name, Some(adopt))
            .await
            .map(|o| (o, true))
    }

    /// Waits for what group commit says of this actor's WriteSet (and of a
    /// partner's paired with it, who hears the same through `partner`),
    /// adopting `state` only once it is durable.
    async fn settle(
        &mut self,
        state: UserState,
        durable: Result<oneshot::Receiver<CommitResult>, Busy>,
        name: &str,
        partner: Option<oneshot::Sender<CommitResult>>,
    ) -> Result<CommitOutcome, Failure> {
        let Ok(durable) = durable else {
            if let Some(p) = partner {
                let _ = p.send(Err(CommitError::Unavailable("backlog full".into())));
            }
            return Err(backlog_busy(name));
        };
        let durable = durable.await;
        if let Some(p) = partner {
            // The recipient adopts its half, forgets it, or reloads, as this says.
            let _ = p.send(as_told(&durable));
        }
        self.adopt(state, durable, name)
    }

    /// Gives this give's debit to the recipient's actor that coordinates
    /// it, and waits for how the pair's commit ended; if the recipient
    /// cannot take its credit, commits the debit alone.
    async fn commit_debit_via(
        &mut self,
        state: UserState,
        writes: WriteSet,
        coordinator: oneshot::Sender<DebitHalf>,
        name: &str,
    ) -> Result<(CommitOutcome, bool), Failure> {
        let (adopt, outcome) = oneshot::channel();
        let writes = self.stamped(writes);
        if let Err(back) = coordinator.send(DebitHalf { writes, adopt }) {
            // The recipient stopped waiting.
            metrics::counter!(m::GIVE_CREDITS_TOTAL, "path" => "after").increment(1);
            return self
                .commit(state, back.writes, name)
                .await
                .map(|o| (o, false));
        }
        match outcome.await {
            Ok(Paired::Committed(result)) => {
                metrics::counter!(m::GIVE_CREDITS_TOTAL, "path" => "paired").increment(1);
                self.adopt(state, Ok(result), name).map(|o| (o, true))
            }
            Ok(Paired::Alone(writes)) => {
                metrics::counter!(m::GIVE_CREDITS_TOTAL, "path" => "after").increment(1);
                self.commit(state, writes, name).await.map(|o| (o, false))
            }
            Ok(Paired::Busy) => Err(backlog_busy(name)),
            // The recipient's actor stopped holding the debit: it may have committed.
            Err(_) => Err(Failure::Unknown(Reply::error(
                name,
                ErrorCode::Internal,
                "outcome unknown; check before retrying",
            ))),
        }
    }

    /// Coordinates a give from a player of a higher key to this one: asks
    /// the sender's actor to decide it, then commits its debit and this
    /// player's credit in one transaction. The sender answers its caller.
    /// This actor waits for the sender (a higher key), and the sender, once
    /// its debit is handed over, waits only for this actor, which by then
    /// holds both halves.
    async fn handle_coordinate(&mut self, command: Command, reply: Unread) -> Next {
        let sender = command.key;
        let (coordinator, asked) = oneshot::channel();
        if let Err(Mail::Debit(back)) = self
            .registry
            .forward(sender, Mail::debit(command, reply, coordinator))
        {
            // The sender's mailbox is full: dropping the mail answers its
            // caller "not delivered", and the caller sends it again.
            drop(back);
            return Next::Continue;
        }
        let Some(DebitHalf {
            writes: theirs,
            adopt,
        }) = wait_for(asked).await
        else {
            return Next::Continue;
        };
        let Some(transfer) = theirs.transfer_out().cloned() else {
            let _ = adopt.send(Paired::Alone(theirs));
            return Next::Continue;
        };
        let Draft {
            state,
            writes: mine,
            ..
        } = match self.decide_paired_credit(&transfer) {
            Ok(d) => d,
            Err(refusal) => {
                tracing::warn!(user = %self.key, reason = %refusal.message, "could not take a credit; the debit commits alone");
                let _ = adopt.send(Paired::Alone(theirs));
                return Next::Continue;
            }
        };
        let mine = self.stamped(mine);
        let Ok(durable) = self.registry.shared.commit.submit_pair(theirs, mine) else {
            let _ = adopt.send(Paired::Busy);
            return Next::Continue;
        };
        let durable = durable.await;
        let _ = adopt.send(Paired::Committed(as_told(&durable)));
        self.adopt_half(state, durable)
    }

    /// Adopts `state` if group commit says its WriteSet is durable, and says
    /// what the caller is to hear otherwise.
    fn adopt(
        &mut self,
        state: UserState,
        durable: Result<CommitResult, oneshot::error::RecvError>,
        name: &str,
    ) -> Result<CommitOutcome, Failure> {
        match durable {
            Ok(Ok(outcome)) => {
                if outcome == CommitOutcome::Applied {
                    self.adopt_state(state);
                }
                Ok(outcome)
            }
            Ok(Err(CommitError::Unavailable(_))) => Err(Failure::Reply(Reply::error(
                name,
                ErrorCode::StorageUnavailable,
                "storage is unavailable; nothing was changed, retry shortly",
            ))),
            // The commit may have landed: this actor's state may be behind
            // storage, so it reloads before its next command.
            Ok(Err(CommitError::Unknown(_))) => Err(Failure::Unknown(Reply::error(
                name,
                ErrorCode::StorageUnavailable,
                "storage failed while saving; the change may or may not have been made: retry with the same id to find out",
            ))),
            Ok(Err(CommitError::Rejected(_))) => Err(Failure::Reply(Reply::error(
                name,
                ErrorCode::Internal,
                "storage refused the change; nothing was changed",
            ))),
            // Another node serves this guild now: nothing was written, and
            // this actor, which may be behind storage, goes away.
            Ok(Err(CommitError::Fenced)) => Err(Failure::Unknown(moved(name))),
            // Group commit went away mid-batch: whether it landed is unknown, so
            // this actor must not go on from its in-memory state.
            Err(_) => Err(Failure::Unknown(Reply::error(
                name,
                ErrorCode::Internal,
                "outcome unknown; check before retrying",
            ))),
        }
    }

    /// Answers a retry with its first reply. A give's credit is delivered
    /// again first (once per transfer id, so a no-op when it landed): the
    /// first try may have died between debit and credit, and its retry's
    /// "sent" must be as visible as the first one would have been.
    fn answer_replay(&self, first: Reply, answer: Answer) {
        match first.ok.then(|| self.sent_in(&first)).flatten() {
            Some(transfer) => self.registry.credit_then_answer(transfer, answer, first),
            None => answer.send(first),
        }
    }

    /// The transfer a give's reply says it sent, from this player.
    fn sent_in(&self, reply: &Reply) -> Option<Transfer> {
        if reply.command != "give" {
            return None;
        }
        let data = &reply.data;
        Some(Transfer {
            id: data["transfer_id"].as_str()?.to_owned(),
            guild: self.key.guild,
            from: self.key.user,
            to: data["to"].as_str()?.parse().ok()?,
            amount: data["amount"].as_i64()?,
            created_ms: (self.registry.shared.config.clock)(),
        })
    }

    async fn first_reply(&self, command: &Command) -> Option<Reply> {
        let id = command.id.as_ref()?;
        match Box::pin(self.registry.shared.store.find_reply(self.key, id)).await {
            Ok(Some(json)) => serde_json::from_str(&json).ok().map(Reply::replay),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(user = %self.key, error = %e, "could not read a stored reply");
                None
            }
        }
    }
}

/// The answer to a command whose guild moved to another node while it was
/// decided: nothing was written; the same command retried finds the owner.
fn moved(name: &str) -> Reply {
    Reply::error(
        name,
        ErrorCode::Busy,
        "this server is moving to another node; nothing was changed, retry shortly",
    )
}

/// Group commit's backlog is full: nothing was written.
fn backlog_busy(name: &str) -> Failure {
    metrics::counter!(m::BUSY_REJECTIONS_TOTAL, "stage" => "backlog").increment(1);
    Failure::Reply(Reply::error(
        name,
        ErrorCode::Busy,
        "the server is busy; retry shortly",
    ))
}

/// What to tell the other half of a pair: group commit's answer, or
/// "unknown" if group commit went away without one.
fn as_told(durable: &Result<CommitResult, oneshot::error::RecvError>) -> CommitResult {
    match durable {
        Ok(r) => r.clone(),
        Err(_) => Err(CommitError::Unknown("group commit went away".into())),
    }
}

/// The answer to a give whose recipient's mailbox is full.
fn recipient_busy(name: &str) -> Reply {
    Reply::error(
        name,
        ErrorCode::Busy,
        "the recipient has too many commands waiting; retry shortly",
    )
}

/// How long a sender waits for the recipient's half of a give before it
/// commits its debit alone. Waits go up in key order only, so this is no
/// deadlock breaker; it bounds a give behind a recipient that is slow
/// (loading from a struggling store, retrying its own commit).
const HALF_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// The recipient's half, if it comes in time. On time-out the channel is
/// closed first, so a half sent at that very instant is either taken here
/// or refused to its sender (who then forgets it): never lost in between.
async fn wait_for_half(asked: oneshot::Receiver<Result<Half, Refusal>>) -> Option<Half> {
    match wait_for(asked).await? {
        Ok(half) => Some(half),
        Err(refusal) => {
            tracing::warn!(reason = %refusal.message, "the recipient refused the credit; the debit commits alone");
            None
        }
    }
}

/// What another actor hands over for a give, if it comes within
/// `HALF_PATIENCE` (see `wait_for_half`).
async fn wait_for<T>(mut asked: oneshot::Receiver<T>) -> Option<T> {
    match tokio::time::timeout(HALF_PATIENCE, &mut asked).await {
        Ok(got) => got.ok(),
        Err(_) => {
            asked.close();
            asked.try_recv().ok()
        }
    }
}

enum Failure {
    /// Nothing was written; answer this.
    Reply(Reply),
    /// The write may or may not have landed; answer this and reload.
    Unknown(Reply),
}

impl Failure {
    /// Answers the caller; after an unknown outcome the actor must reload.
    fn answer(self, answer: Answer) -> Next {
        match self {
            Self::Reply(r) => {
                answer.send(r);
                Next::Continue
            }
            Self::Unknown(r) => {
                answer.send(r);
                Next::Leave(Leave::UnknownOutcome)
            }
        }
    }
}

/// The answer when what a command would close had already moved on.
/// The default settings, shared, for commands that read none.
fn fallback_settings() -> Arc<GuildSettings> {
    static FALLBACK: std::sync::LazyLock<Arc<GuildSettings>> =
        std::sync::LazyLock::new(Arc::default);
    FALLBACK.clone()
}

fn lost_race(name: &str) -> Reply {
    let message = match name {
        "arena_leave" => "You have been matched; the battle's result is on its way.",
        "cancel" => "The job finished before it could be cancelled; nothing was refunded.",
        _ => "This had already finished; nothing was changed.",
    };
    Reply::error(name, ErrorCode::AlreadyFinished, message)
}

fn refusal_reply(name: &str, r: Refusal) -> Reply {
    Reply::error(name, r.code, r.message)
}

#[cfg(test)]
mod tests {
    fn future_size<A, F: std::future::Future>(_: fn(A) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// A million resident players must fit in 1 GiB: what every idle actor
    /// carries (its future, and the mail its mailbox holds) stays small.
    #[test]
    fn an_idle_actor_stays_small() {
        let run = future_size(super::UserActor::run);
        let mail = std::mem::size_of::<crate::mailbox::Mail>();
        // Tokio allocates a task's cell 128-byte aligned: past 408 bytes of
        // future, every actor costs 128 bytes more (measured: 1,371 -> 1,765
        // bytes per resident player when it grew to 424; with the lease
        // epoch at 408, tests/memory.rs measured 699 bytes allocated per
        // player, and 827 at 424).
        assert!(
            run <= 408,
            "UserActor::run's future grew to {run} bytes; box the big await"
        );
        assert!(mail <= 16, "Mail grew to {mail} bytes; box its payload");
    }
}
