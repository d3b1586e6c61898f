//! Where records come from: a legacy file, read record by record on a
//! blocking thread (its checks run there too, beside the writes), or the
//! roleplay bot's PostgreSQL. Either way checked records go down a bounded
//! channel, so memory holds a few batches whatever the source's size.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::mpsc::Sender;
use tokio::task::JoinHandle;

use super::scan::{Found, Scanner, Shape};
use super::{collection, roleplay, value, Checked, Format, ImportArgs, Kind, Rules};

/// The longest line taken as one JSON-lines document.
const MAX_LINE: usize = 1 << 20;

pub enum Source {
    Collection(PathBuf),
    RoleplayFile(PathBuf),
    RoleplayPostgres(String),
}

impl Source {
    pub fn new(args: &ImportArgs) -> anyhow::Result<Self> {
        Ok(match (args.format, &args.file, &args.from_postgres) {
            (Format::Roleplay, _, Some(url)) => Self::RoleplayPostgres(url.clone()),
            (Format::Collection, Some(f), _) => Self::Collection(f.clone()),
            (Format::Roleplay, Some(f), _) => Self::RoleplayFile(f.clone()),
            _ => anyhow::bail!("give the legacy file (or --from-postgres URL for roleplay)"),
        })
    }

    /// Reads the source on its own task; it answers where it stopped, if
    /// the source could not be read to its end.
    pub fn spawn(
        self,
        rules: Arc<Rules>,
        tx: Sender<Checked>,
    ) -> JoinHandle<anyhow::Result<Option<String>>> {
        match self {
            Self::RoleplayPostgres(url) => tokio::spawn(async move {
                super::postgres::read(&url, &rules, &tx)
                    .await
                    .map(|()| None)
            }),
            Self::Collection(path) => {
                tokio::task::spawn_blocking(move || collection_file(&path, &rules, &tx))
            }
            Self::RoleplayFile(path) => {
                tokio::task::spawn_blocking(move || roleplay_file(&path, &rules, &tx))
            }
        }
    }
}

fn open(path: &PathBuf) -> anyhow::Result<BufReader<File>> {
    let f = File::open(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(BufReader::with_capacity(1 << 16, f))
}

/// Runs the scanner, sending each record `check` makes of a find.
fn scan(
    reader: impl BufRead,
    shape: &dyn Shape,
    tx: &Sender<Checked>,
    check: &dyn Fn(Vec<String>, u64, Result<serde_json::Value, String>) -> Checked,
) -> Option<String> {
    let mut stopped = None;
    Scanner::new(reader).run(shape, &mut |found| match found {
        Found::Record {
            path,
            bytes,
            number,
        } => tx
            .blocking_send(check(path, number, value::strict(&bytes)))
            .is_ok(),
        Found::Unknown { path } => {
            println!("WARNING {}: unknown key, ignored", path.join("."));
            true
        }
        Found::Stop {
            offset,
            number,
            why,
        } => {
            stopped = Some(format!("at byte {offset}, after record {number}: {why}"));
            false
        }
    });
    stopped
}

fn collection_file(
    path: &PathBuf,
    rules: &Rules,
    tx: &Sender<Checked>,
) -> anyhow::Result<Option<String>> {
    if looks_like_lines(path)? {
        let mut reader = open(path)?;
        let mut line = Vec::new();
        let mut n = 0u64;
        loop {
            line.clear();
            let read = reader
                .read_until(b'\n', &mut line)
                .with_context(|| format!("reading {}", path.display()))?;
            if read == 0 {
                return Ok(None);
            }
            n += 1;
            let text = line
                .strip_prefix(b"\xEF\xBB\xBF".as_slice())
                .unwrap_or(&line);
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let at = format!("line {n}");
            let checked = collection::check(at, value::strict(text), None, rules);
            if tx.blocking_send(checked).is_err() {
                return Ok(None);
            }
        }
    }
    let check = |path: Vec<String>, number: u64, doc| {
        let key = path.first().map(String::as_str).unwrap_or("");
        match key.strip_prefix('#') {
            Some(_) => collection::check(format!("record {number}"), doc, None, rules),
            None => collection::check(
                format!("record {number} (user {key})"),
                doc,
                Some(key),
                rules,
            ),
        }
    };
    Ok(scan(open(path)?, &collection::Documents, tx, &check))
}

/// Whether a collection file is JSON lines: it opens with an object
/// whose first key is a document's field (`"guild_id"`, `"gold"`…), not a
/// user id (an object of documents keyed by user id) or `"version"`.
fn looks_like_lines(path: &PathBuf) -> anyhow::Result<bool> {
    let mut head = Vec::new();
    open(path)?
        .take(MAX_LINE as u64)
        .read_to_end(&mut head)
        .with_context(|| format!("reading {}", path.display()))?;
    let text = head
        .strip_prefix(b"\xEF\xBB\xBF".as_slice())
        .unwrap_or(&head);
    let mut rest = text.iter().skip_while(|c| c.is_ascii_whitespace());
    if rest.next() != Some(&b'{') {
        return Ok(false);
    }
    let rest: Vec<u8> = rest
        .skip_while(|c| c.is_ascii_whitespace())
        .copied()
        .collect();
    if rest.first() != Some(&b'"') {
        return Ok(true);
    }
    let end = rest[1..]
        .iter()
        .position(|c| *c == b'"')
        .map_or(rest.len(), |e| e + 1);
    let key = String::from_utf8_lossy(&rest[1..end.min(rest.len())]);
    Ok(key != "version" && value::canonical_id(&key).is_none())
}

fn roleplay_file(
    path: &PathBuf,
    rules: &Rules,
    tx: &Sender<Checked>,
) -> anyhow::Result<Option<String>> {
    let check = |path: Vec<String>, _: u64, doc| {
        let at = path.join(".");
        match path.as_slice() {
            [_, guild] => roleplay::check_config(at, guild, doc, rules),
            [_, guild, user] => roleplay::check_player(at, guild, user, doc, rules),
            _ => Checked::unreadable(at, Kind::Players, "not a record".to_owned()),
        }
    };
    Ok(scan(open(path)?, &roleplay::File, tx, &check))
}
