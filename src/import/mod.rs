//! `kokoro import FORMAT FILE [--dry-run]`: the legacy bots' data into a
//! real store, without losing a record or stopping for one.
//!
//! A source (`source.rs`: a file read record by record, or the roleplay
//! bot's PostgreSQL) hands over records; each is checked by its format's
//! rules (`collection.rs`, `roleplay.rs`) into a WriteSet, or rejected
//! with its reason. Checked records are written a batch per transaction
//! through the store's group-commit path, each under a command id of its
//! own (`import:{format}:{guild}:{user}`), so a second run imports nothing
//! twice; players kokoro already has are left alone. A record the store
//! still refuses while written is rejected alone: its batch is written
//! again one record at a time. A dry run takes the same path and rolls
//! each batch back, so it predicts the real run exactly.
//!
//! The import ends with a reconciliation per kind (players, guilds,
//! characters, balances, items, settings): what was read equals what was
//! imported, rejected, or already present. `--verify` compares the store
//! with the source afterwards and names every record that differs.
//!
//! Stop `serve` while importing: its actors keep players in memory.

mod collection;
mod compare;
mod postgres;
mod roleplay;
mod scan;
mod source;
mod value;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use actors::game::collection::roster::Roster;
use actors::game::economy::shop::Catalogue;
use actors::store::StoreError;
use actors::writeset::{CommitOutcome, WriteSet};
use actors::{GuildId, Store, UserId, UserKey};
use anyhow::Context;

use crate::settings::StorageArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The collectible-character bot: one JSON document per player (a JSON
    /// array, one document per line, or an object keyed by user id).
    Collection,
    /// The roleplay XP bot: its single JSON file (`config` per guild,
    /// `users` per guild and player), or its PostgreSQL (--from-postgres).
    Roleplay,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    pub format: Format,
    /// The legacy file (not with --from-postgres).
    #[arg(
        required_unless_present = "from_postgres",
        conflicts_with = "from_postgres"
    )]
    pub file: Option<PathBuf>,
    /// Report what would be imported, every record that would be rejected
    /// and the reconciliation, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The admin (a user id) the imported guild settings are recorded under
    /// in the audit log (roleplay format).
    #[arg(long)]
    pub admin: Option<i64>,
    /// Players per transaction.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batch: u64,
    /// The guild of records that name none (the collection bot kept no
    /// guild; the roleplay bot's PostgreSQL holds one guild).
    #[arg(long)]
    pub guild: Option<i64>,
    /// Reject a record with a key kokoro does not know (otherwise a
    /// warning names the key and the record is imported without it).
    #[arg(long)]
    pub strict: bool,
    /// Legacy character names mapped to roster names: a text file of
    /// `legacy name = roster name` lines (`#` starts a comment).
    #[arg(long)]
    pub characters_map: Option<PathBuf>,
    /// Read the roleplay bot's PostgreSQL (`postgres://…`) directly, read
    /// only, in one snapshot; needs --guild.
    #[arg(long, hide_env_values = true)]
    pub from_postgres: Option<String>,
    /// Compare the store with the source: every record, checked as an
    /// import checks it, against what the store holds; each difference is
    /// named. Changes nothing.
    #[arg(long, conflicts_with = "dry_run")]
    pub verify: bool,
    /// Print a line for every record imported, not only the rejected.
    #[arg(long)]
    pub verbose: bool,
}

/// The kinds of record the reconciliation adds up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Players,
    /// A guild's configuration (roleplay format).
    Guilds,
    Characters,
    /// Gold and gems, each a balance.
    Balances,
    /// Inventory entries.
    Items,
    /// A guild's settings, each a value.
    Settings,
}

const KINDS: [Kind; 6] = [
    Kind::Players,
    Kind::Guilds,
    Kind::Characters,
    Kind::Balances,
    Kind::Items,
    Kind::Settings,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Players => "players",
            Self::Guilds => "guilds",
            Self::Characters => "characters",
            Self::Balances => "balances",
            Self::Items => "items",
            Self::Settings => "settings",
        }
    }
}

type Counts = [u64; KINDS.len()];

/// What the checks need besides the record.
pub struct Rules {
    pub catalogue: Catalogue,
    pub roster: Roster,
    pub now_ms: i64,
    pub admin: Option<UserId>,
    pub guild: Option<GuildId>,
    pub strict: bool,
    pub characters_map: CharactersMap,
}

/// `--characters-map`: legacy names to roster names.
#[derive(Debug, Default)]
pub struct CharactersMap(HashMap<String, String>);

impl CharactersMap {
    /// Reads the map, checking each target is in the roster; errors say
    /// `file:line: message`.
    pub fn read(path: &std::path::Path, roster: &Roster) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut map = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let at = format!("{}:{}", path.display(), i + 1);
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let Some((from, to)) = line.split_once('=') else {
                anyhow::bail!("{at}: expected `legacy name = roster name`");
            };
            let (from, to) = (from.trim(), to.trim());
            if from.is_empty() || to.is_empty() {
                anyhow::bail!("{at}: expected `legacy name = roster name`");
            }
            let Some((_, known)) = roster.find(to) else {
                anyhow::bail!("{at}: {to:?} is not a character of the roster");
            };
            if map
                .insert(from.to_lowercase(), known.name.clone())
                .is_some()
            {
                anyhow::bail!("{at}: {from:?} is mapped twice");
            }
        }
        Ok(Self(map))
    }

    pub fn get(&self, legacy: &str) -> Option<&String> {
        self.0.get(&legacy.trim().to_lowercase())
    }
}

/// One record, checked: its WriteSet or why it is rejected, what it
/// carried (per kind), and what of it was rejected alone.
#[derive(Debug)]
pub struct Checked {
    pub at: String,
    primary: Kind,
    pub key: Option<UserKey>,
    pub what: String,
    pub warnings: Vec<String>,
    /// Parts rejected alone (a character): kind, where, why.
    pub rejected_parts: Vec<(Kind, String, String)>,
    read: Counts,
    good: Counts,
    part_rejected: Counts,
    pub ws: Option<WriteSet>,
    pub why: Option<String>,
}

impl Checked {
    fn new(at: String, primary: Kind) -> Self {
        let mut read = Counts::default();
        read[primary as usize] = 1;
        Self {
            at,
            primary,
            key: None,
            what: String::new(),
            warnings: Vec::new(),
            rejected_parts: Vec::new(),
            read,
            good: Counts::default(),
            part_rejected: Counts::default(),
            ws: None,
            why: None,
        }
    }

    /// A record that could not be read at all.
    pub fn unreadable(at: String, primary: Kind, why: String) -> Self {
        Self::new(at, primary).finish(Err(why))
    }

    fn read(&mut self, k: Kind, n: u64) {
        self.read[k as usize] += n;
    }
    fn read_of(&self, k: Kind) -> u64 {
        self.read[k as usize]
    }
    fn good(&mut self, k: Kind, n: u64) {
        self.good[k as usize] += n;
    }
    fn good_of(&self, k: Kind) -> u64 {
        self.good[k as usize]
    }
    fn reject_part(&mut self, k: Kind, at: String, why: String) {
        self.part_rejected[k as usize] += 1;
        self.rejected_parts.push((k, at, why));
    }
    fn warn(&mut self, w: String) {
        self.warnings.push(w);
    }
    fn unknown_key(&mut self, key: String, rules: &Rules) -> Result<(), String> {
        if rules.strict {
            return Err(format!("unknown key {key:?} (--strict)"));
        }
        self.warn(format!("unknown key {key:?} ignored"));
        Ok(())
    }
    fn unknown_keys(&mut self, f: &value::Fields, rules: &Rules) -> Result<(), String> {
        for k in f.unknown() {
            self.unknown_key(k, rules)?;
        }
        Ok(())
    }
    fn finish(mut self, r: Result<WriteSet, String>) -> Self {
        match r {
            Ok(ws) => self.ws = Some(ws),
            Err(why) => self.why = Some(why),
        }
        self
    }
}

/// The reconciliation: per kind, read = imported + rejected + present.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    pub read: Counts,
    pub imported: Counts,
    pub rejected: Counts,
    pub present: Counts,
    /// Records (players and guild configurations) by outcome.
    pub records_imported: u64,
    pub records_present: u64,
    pub records_rejected: u64,
    /// Where the source stopped, if it could not be read to its end.
    pub stopped: Option<String>,
}

impl Tally {
    fn add(into: &mut Counts, from: &Counts) {
        for (a, b) in into.iter_mut().zip(from) {
            *a += b;
        }
    }

    fn merge(&mut self, other: &Tally) {
        Self::add(&mut self.read, &other.read);
        Self::add(&mut self.imported, &other.imported);
        Self::add(&mut self.rejected, &other.rejected);
        Self::add(&mut self.present, &other.present);
        self.records_imported += other.records_imported;
        self.records_present += other.records_present;
        self.records_rejected += other.records_rejected;
    }

    /// The kinds that do not add up (none, unless kokoro has a bug).
    pub fn unbalanced(&self) -> Vec<&'static str> {
        KINDS
            .iter()
            .filter(|k| {
                let i = **k as usize;
                self.read[i] != self.imported[i] + self.rejected[i] + self.present[i]
            })
            .map(|k| k.name())
            .collect()
    }

    /// The table printed at the end of every import and dry run.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<12}{:>10}{:>10}{:>10}{:>10}\n",
            "reconciled", "read", "imported", "rejected", "present"
        );
        for k in KINDS {
            let i = k as usize;
            if self.read[i] == 0 {
                continue;
            }
            out.push_str(&format!(
                "{:<12}{:>10}{:>10}{:>10}{:>10}\n",
                k.name(),
                self.read[i],
                self.imported[i],
                self.rejected[i],
                self.present[i]
            ));
        }
        out
    }
}

pub async fn run(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let roster = Roster::shipped().context("reading the shipped characters")?;
    let characters_map = match &args.characters_map {
        Some(p) => CharactersMap::read(p, &roster)?,
        None => CharactersMap::default(),
    };
    let rules = Arc::new(Rules {
        catalogue: Catalogue::shipped(),
        roster,
        now_ms: actors::config::unix_ms(),
        admin: args.admin.and_then(|a| UserId::new(a).ok()),
        guild: match args.guild {
            Some(g) => Some(GuildId::new(g).map_err(|e| anyhow::anyhow!("--guild: {e}"))?),
            None => None,
        },
        strict: args.strict,
        characters_map,
    });
    if args.from_postgres.is_some() && args.format != Format::Roleplay {
        anyhow::bail!("--from-postgres reads the roleplay bot's database: use `import roleplay`");
    }
    if args.from_postgres.is_some() && rules.guild.is_none() {
        anyhow::bail!(
            "--from-postgres needs --guild ID (the roleplay bot's database holds one guild)"
        );
    }
    let store = crate::ops::open(&args.storage).await?;
    store.migrate().await?;
    let source = source::Source::new(&args)?;
    if args.verify {
        return compare::run(&store, source, rules).await;
    }
    let batch = args.batch as usize;
    let (tx, rx) = tokio::sync::mpsc::channel::<Checked>(batch * 2);
    let reading = source.spawn(rules, tx);
    let tally = drive(&store, rx, batch, args.dry_run, args.verbose).await;
    // The reader ends once the channel closes, whatever `drive` returned.
    let stopped = reading.await.context("the file reader failed")??;
    let mut tally = tally?;
    tally.stopped = stopped;
    print!("{}", tally.table());
    if let Some(s) = &tally.stopped {
        println!("STOPPED {s}");
    }
    let unbalanced = tally.unbalanced();
    if !unbalanced.is_empty() {
        anyhow::bail!(
            "the reconciliation does not add up for {} (a bug in kokoro: please report it)",
            unbalanced.join(", ")
        );
    }
    if args.dry_run {
        println!(
            "dry run: {} record(s) would be imported, {} rejected, {} already present; nothing was changed",
            tally.records_imported, tally.records_rejected, tally.records_present
        );
    } else {
        let from = match (&args.file, &args.from_postgres) {
            (Some(f), _) => f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            _ => "postgres".to_owned(),
        };
        store
            .audit_operator(
                "import",
                &format!("{:?}", args.format).to_lowercase(),
                &format!(
                    "{} imported, {} skipped, {} rejected{}",
                    tally.records_imported,
                    tally.records_present,
                    tally.records_rejected,
                    if tally.stopped.is_some() {
                        ", file damaged"
                    } else {
                        ""
                    }
                ),
                &from,
            )
            .await?;
        println!(
            "imported {}, skipped {}, rejected {} (skipped: imported before, or a player kokoro already has)",
            tally.records_imported, tally.records_present, tally.records_rejected
        );
    }
    store.close().await;
    Ok(if tally.stopped.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Takes checked records off the channel and settles them a batch at a
/// time; prints each rejection and warning as it is decided. On
/// PostgreSQL two batches are written at once (distinct players: no two
/// touch one row), on two connections; SQLite has one writer.
pub async fn drive(
    store: &Store,
    mut rx: tokio::sync::mpsc::Receiver<Checked>,
    batch: usize,
    dry_run: bool,
    verbose: bool,
) -> anyhow::Result<Tally> {
    use futures::StreamExt;
    let at_once = match store.backend() {
        actors::store::Backend::Postgres => 2,
        actors::store::Backend::Sqlite => 1,
    };
    let mut tally = Tally::default();
    let mut seen: HashSet<(bool, UserKey)> = HashSet::new();
    let mut pending: Vec<Checked> = Vec::with_capacity(batch);
    let mut writing = futures::stream::FuturesOrdered::new();
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {pos} records {per_sec}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let done =
        |settled: anyhow::Result<(Tally, Vec<String>)>, tally: &mut Tally| -> anyhow::Result<()> {
            let (part, lines) = settled?;
            for l in lines {
                println!("{l}");
            }
            tally.merge(&part);
            Ok(())
        };
    loop {
        let next = rx.recv().await;
        let full = pending.len() >= batch || (next.is_none() && !pending.is_empty());
        if full {
            if writing.len() >= at_once {
                if let Some(settled) = writing.next().await {
                    done(settled, &mut tally)?;
                }
            }
            writing.push_back(settle(
                store,
                std::mem::take(&mut pending),
                dry_run,
                verbose,
            ));
        }
        let Some(mut c) = next else { break };
        bar.inc(1);
        Tally::add(&mut tally.read, &c.read);
        for w in &c.warnings {
            println!("WARNING {}: {w}", c.at);
        }
        if c.why.is_none() {
            if let Some(key) = c.key {
                if !seen.insert((c.primary == Kind::Guilds, key)) {
                    c.why = Some(format!("{key} appears earlier in the source too"));
                    c.ws = None;
                }
            }
        }
        if let Some(why) = &c.why {
            println!("REJECTED {}: {why}", c.at);
            Tally::add(&mut tally.rejected, &c.read);
            tally.records_rejected += 1;
            continue;
        }
        for (_, part, why) in &c.rejected_parts {
            println!("REJECTED {} {part}: {why}", c.at);
        }
        Tally::add(&mut tally.rejected, &c.part_rejected);
        pending.push(c);
    }
    while let Some(settled) = writing.next().await {
        done(settled, &mut tally)?;
    }
    bar.finish_and_clear();
    Ok(tally)
}

/// What happens to a good record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Written whole.
    Whole,
    /// The player is kokoro's already; their roleplay characters join them.
    Join,
    /// Kokoro has the player (and, for roleplay, their characters).
    Present,
}

/// Writes one batch; answers what it did (read counts excepted: those
/// are taken as records arrive) and the lines to print.
async fn settle(
    store: &Store,
    batch: Vec<Checked>,
    dry_run: bool,
    verbose: bool,
) -> anyhow::Result<(Tally, Vec<String>)> {
    let mut tally = Tally::default();
    let mut lines = Vec::new();
    let keys: Vec<UserKey> = batch
        .iter()
        .filter(|c| c.primary == Kind::Players)
        .filter_map(|c| c.key)
        .collect();
    let presence = store.presence(&keys).await?;
    let mut fates = Vec::with_capacity(batch.len());
    let mut writes = Vec::with_capacity(batch.len());
    for c in &batch {
        let Some(ws) = &c.ws else { continue };
        let roleplay = ws
            .writes
            .iter()
            .any(|w| matches!(w, actors::writeset::Write::RpPlayer { .. }));
        let fate = match (c.primary, presence.get(&ws.key)) {
            (Kind::Guilds, _) | (_, None) => Fate::Whole,
            (_, Some(false)) if roleplay => Fate::Join,
            (_, Some(_)) => Fate::Present,
        };
        fates.push(fate);
        match fate {
            Fate::Whole => writes.push(ws.clone()),
            Fate::Join => {
                let mut only = ws.clone();
                only.row = None;
                writes.push(only);
            }
            Fate::Present => {}
        }
    }
    let mut outcomes = write(store, &writes, dry_run).await?.into_iter();
    for (c, fate) in batch.iter().zip(fates) {
        let outcome = match fate {
            Fate::Present => Ok(CommitOutcome::AlreadyApplied),
            _ => outcomes
                .next()
                .context("the store answered fewer outcomes than writes")?,
        };
        match outcome {
            Ok(CommitOutcome::Applied) => {
                tally.records_imported += 1;
                if fate == Fate::Join {
                    let mut joined = c.good;
                    tally.present[Kind::Players as usize] += joined[Kind::Players as usize];
                    joined[Kind::Players as usize] = 0;
                    Tally::add(&mut tally.imported, &joined);
                } else {
                    Tally::add(&mut tally.imported, &c.good);
                }
                if verbose {
                    let verb = if dry_run { "would import" } else { "imported" };
                    lines.push(format!("{verb} {}", c.what));
                }
            }
            Ok(CommitOutcome::AlreadyApplied) => {
                tally.records_present += 1;
                Tally::add(&mut tally.present, &c.good);
            }
            Err(why) => {
                lines.push(format!("REJECTED {}: the store refused it: {why}", c.at));
                tally.records_rejected += 1;
                Tally::add(&mut tally.rejected, &c.good);
            }
        }
    }
    Ok((tally, lines))
}

/// Writes a batch (or tries it, for a dry run). If the store refuses it
/// for what one record holds, the batch is written again a record at a
/// time so that only that record is rejected; a store that cannot be
/// reached stops the import (a re-run resumes it: command ids).
async fn write<'a>(
    store: &'a Store,
    writes: &'a [WriteSet],
    dry_run: bool,
) -> anyhow::Result<Vec<Result<CommitOutcome, String>>> {
    // Borrowed, never copied: a batch is tried as it is.
    let attempt = |w: &'a [WriteSet]| async move {
        if dry_run {
            store.trial(w).await
        } else {
            store.commit(w).await
        }
    };
    if writes.is_empty() {
        return Ok(Vec::new());
    }
    match attempt(writes).await {
        Ok(o) => return Ok(o.into_iter().map(Ok).collect()),
        Err(StoreError::Db(sqlx::Error::Database(_))) => {}
        Err(e) => return Err(e).context("writing a batch (a re-run resumes where it stopped)"),
    }
    let mut out = Vec::with_capacity(writes.len());
    for w in writes {
        match attempt(std::slice::from_ref(w)).await {
            Ok(o) => out.push(Ok(o.into_iter().next().unwrap_or(CommitOutcome::Applied))),
            Err(StoreError::Db(sqlx::Error::Database(e))) => out.push(Err(e.message().to_owned())),
            Err(e) => {
                return Err(e).context("writing a record (a re-run resumes where it stopped)")
            }
        }
    }
    Ok(out)
}

/// The command id that makes a record's import happen once.
fn command_id(format: &str, key: UserKey) -> Option<actors::CommandId> {
    format!("import:{format}:{}:{}", key.guild, key.user)
        .parse()
        .ok()
}

/// The reply stored with an import's command id.
fn reply(what: &str) -> String {
    serde_json::json!({"ok": true, "command": "import", "data": null, "message": what}).to_string()
}
