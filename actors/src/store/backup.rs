//! Backups that restore, on SQLite and PostgreSQL alike: a logical export
//! of kokoro's tables read in one snapshot (SQLite's read transaction in
//! WAL mode; PostgreSQL's REPEATABLE READ), so a backup taken while serving
//! is consistent and needs no `pg_dump` of a matching version.
//!
//! The file is gzip-compressed JSON lines: a header (format, time, kokoro
//! version, schema version, backend), then per table a line naming it and
//! its columns followed by one JSON array per row, then a manifest with the
//! row count of every table and the SHA-256 of every line before it. A file
//! cut short has no manifest; a changed one fails its checksum.
//!
//! Compression and file I/O run on a thread of their own, fed through a
//! bounded channel, so a large backup never blocks the async workers.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The format this build writes and reads.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Header {
    pub kokoro_backup: u32,
    pub created_ms: i64,
    pub kokoro_version: String,
    pub schema_version: i64,
    pub backend: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// Rows per table.
    pub rows: BTreeMap<String, u64>,
    /// SHA-256 (hex) of every line before the manifest, newlines included.
    pub sha256: String,
}

/// One line of a backup, as read.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Table { name: String, columns: Vec<String> },
    Row(Vec<Value>),
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path}: {why}")]
    Io { path: PathBuf, why: String },
    #[error("{path}: not a kokoro backup: {why}")]
    Format { path: PathBuf, why: String },
    #[error("{path}: the backup is damaged: {why}")]
    Damaged { path: PathBuf, why: String },
}

/// Writes a backup on a thread of its own; `finish` seals it with the
/// manifest and moves it into place (a half-written backup never has the
/// final name).
pub struct BackupWriter {
    tx: tokio::sync::mpsc::Sender<Line>,
    thread: std::thread::JoinHandle<Result<Manifest, BackupError>>,
    path: PathBuf,
}

enum Line {
    Table(String, Vec<String>),
    Row(Vec<Value>),
    /// The export failed: no backup is left behind.
    Abort,
}

impl BackupWriter {
    pub fn create(path: &Path, header: &Header) -> Result<Self, BackupError> {
        let io = |why: std::io::Error| BackupError::Io {
            path: path.to_owned(),
            why: why.to_string(),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let part = part_path(path);
        let file = std::fs::File::create(&part).map_err(io)?;
        let header = serde_json::to_string(header).map_err(|e| io(std::io::Error::other(e)))?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Line>(1024);
        let (target, final_path) = (part.clone(), path.to_owned());
        let thread = std::thread::Builder::new()
            .name("kokoro-backup".into())
            .spawn(move || {
                let io = |why: std::io::Error| BackupError::Io {
                    path: target.clone(),
                    why: why.to_string(),
                };
                let mut out = Sealed::new(flate2::write::GzEncoder::new(
                    BufWriter::new(file),
                    flate2::Compression::default(),
                ));
                out.line(&header).map_err(io)?;
                let mut rows: BTreeMap<String, u64> = BTreeMap::new();
                let mut table = String::new();
                while let Some(line) = rx.blocking_recv() {
                    match line {
                        Line::Abort => {
                            drop(out);
                            let _ = std::fs::remove_file(&target);
                            return Err(BackupError::Io {
                                path: final_path,
                                why: "abandoned".into(),
                            });
                        }
                        Line::Table(name, columns) => {
                            let v = serde_json::json!({ "table": name, "columns": columns });
                            out.line(&v.to_string()).map_err(io)?;
                            rows.insert(name.clone(), 0);
                            table = name;
                        }
                        Line::Row(values) => {
                            out.line(&Value::Array(values).to_string()).map_err(io)?;
                            if let Some(n) = rows.get_mut(&table) {
                                *n += 1;
                            }
                        }
                    }
                }
                let manifest = Manifest {
                    rows,
                    sha256: hex::encode(out.hasher.clone().finalize()),
                };
                let trailer = serde_json::json!({ "manifest": manifest }).to_string();
                out.write_raw(&trailer).map_err(io)?;
                let file = out
                    .inner
                    .finish()
                    .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
                    .map_err(io)?;
                file.sync_all().map_err(io)?;
                std::fs::rename(&target, &final_path).map_err(io)?;
                Ok(manifest)
            })
            .map_err(io)?;
        Ok(Self {
            tx,
            thread,
            path: path.to_owned(),
        })
    }

    pub async fn table(&self, name: &str, columns: Vec<String>) -> Result<(), BackupError> {
        self.send(Line::Table(name.to_owned(), columns)).await
    }

    pub async fn row(&self, values: Vec<Value>) -> Result<(), BackupError> {
        self.send(Line::Row(values)).await
    }

    async fn send(&self, line: Line) -> Result<(), BackupError> {
        // The writer thread only hangs up when it failed: `finish` says why.
        self.tx.send(line).await.map_err(|_| BackupError::Io {
            path: self.path.clone(),
            why: "the backup writer stopped".into(),
        })
    }

    /// Abandons the backup: its partial file is deleted.
    pub async fn abort(self) {
        let _ = self.tx.send(Line::Abort).await;
        let _ = self.finish().await;
    }

    pub async fn finish(self) -> Result<Manifest, BackupError> {
        drop(self.tx);
        let path = self.path;
        tokio::task::spawn_blocking(move || {
            self.thread.join().unwrap_or_else(|_| {
                Err(BackupError::Io {
                    path,
                    why: "the backup writer panicked".into(),
                })
            })
        })
        .await
        .unwrap_or_else(|e| {
            Err(BackupError::Io {
                path: PathBuf::new(),
                why: e.to_string(),
            })
        })
    }
}

fn part_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".part");
    PathBuf::from(p)
}

/// Lines written through the checksum.
struct Sealed<W: Write> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Sealed<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
        }
    }

    fn line(&mut self, text: &str) -> std::io::Result<()> {
        self.hasher.update(text.as_bytes());
        self.hasher.update(b"\n");
        self.write_raw(text)
    }

    fn write_raw(&mut self, text: &str) -> std::io::Result<()> {
        self.inner.write_all(text.as_bytes())?;
        self.inner.write_all(b"\n")
    }
}

/// Reads a backup through, checking it: the header's format, every line's
/// shape, the manifest's row counts and checksum. `each` sees every table
/// and row in order; nothing it did counts if this returns an error (the
/// restore runs it inside a transaction it then rolls back).
pub struct BackupReader {
    path: PathBuf,
    lines: std::io::Lines<BufReader<flate2::read::GzDecoder<std::fs::File>>>,
    hasher: Sha256,
    pub header: Header,
    rows: BTreeMap<String, u64>,
    table: Option<String>,
    manifest: Option<Manifest>,
}

impl BackupReader {
    pub fn open(path: &Path) -> Result<Self, BackupError> {
        let file = std::fs::File::open(path).map_err(|e| BackupError::Io {
            path: path.to_owned(),
            why: e.to_string(),
        })?;
        let mut lines = BufReader::new(flate2::read::GzDecoder::new(file)).lines();
        let format = |why: String| BackupError::Format {
            path: path.to_owned(),
            why,
        };
        let first = lines
            .next()
            .ok_or_else(|| format("it is empty".into()))?
            .map_err(|e| format(e.to_string()))?;
        let header: Header =
            serde_json::from_str(&first).map_err(|e| format(format!("its header: {e}")))?;
        if header.kokoro_backup != FORMAT {
            return Err(format(format!(
                "format {} (this kokoro reads format {FORMAT})",
                header.kokoro_backup
            )));
        }
        let mut hasher = Sha256::new();
        hasher.update(first.as_bytes());
        hasher.update(b"\n");
        Ok(Self {
            path: path.to_owned(),
            lines,
            hasher,
            header,
            rows: BTreeMap::new(),
            table: None,
            manifest: None,
        })
    }

    fn damaged(&self, why: impl Into<String>) -> BackupError {
        BackupError::Damaged {
            path: self.path.clone(),
            why: why.into(),
        }
    }

    /// The next table or row; `None` once the manifest has been read and
    /// found to match.
    pub fn next_item(&mut self) -> Result<Option<Item>, BackupError> {
        if self.manifest.is_some() {
            return Ok(None);
        }
        let Some(line) = self.lines.next() else {
            return Err(self.damaged("it ends before its manifest (cut short?)"));
        };
        let line = line.map_err(|e| self.damaged(e.to_string()))?;
        let value: Value = serde_json::from_str(&line)
            .map_err(|e| self.damaged(format!("a line is not JSON: {e}")))?;
        if let Value::Array(values) = value {
            let Some(table) = &self.table else {
                return Err(self.damaged("a row before any table"));
            };
            *self.rows.entry(table.clone()).or_default() += 1;
            self.hasher.update(line.as_bytes());
            self.hasher.update(b"\n");
            return Ok(Some(Item::Row(values)));
        }
        if let Some(m) = value.get("manifest") {
            let manifest: Manifest = serde_json::from_value(m.clone())
                .map_err(|e| self.damaged(format!("its manifest: {e}")))?;
            let sha = hex::encode(self.hasher.clone().finalize());
            if sha != manifest.sha256 {
                return Err(self.damaged(format!(
                    "checksum {sha} differs from the manifest's {}",
                    manifest.sha256
                )));
            }
            // Tables with no rows are in the manifest too.
            let mut counted = self.rows.clone();
            for name in manifest.rows.keys() {
                counted.entry(name.clone()).or_default();
            }
            if counted != manifest.rows {
                return Err(self.damaged("its row counts differ from its manifest"));
            }
            self.manifest = Some(manifest);
            return Ok(None);
        }
        let (Some(name), Some(columns)) = (value["table"].as_str(), value["columns"].as_array())
        else {
            return Err(self.damaged("a line that is neither a table, a row nor the manifest"));
        };
        let columns: Vec<String> = columns
            .iter()
            .filter_map(|c| c.as_str().map(str::to_owned))
            .collect();
        if !valid_identifier(name) || !columns.iter().all(|c| valid_identifier(c)) {
            return Err(self.damaged(format!("table {name:?} has a name kokoro never writes")));
        }
        self.hasher.update(line.as_bytes());
        self.hasher.update(b"\n");
        self.table = Some(name.to_owned());
        self.rows.insert(name.to_owned(), 0);
        Ok(Some(Item::Table {
            name: name.to_owned(),
            columns,
        }))
    }

    /// The manifest, once every item has been read.
    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref()
    }
}

/// Reads a whole backup to check it; its header and manifest.
pub fn check_file(path: &Path) -> Result<(Header, Manifest), BackupError> {
    let mut r = BackupReader::open(path)?;
    while r.next_item()?.is_some() {}
    let manifest = r.manifest().cloned().unwrap_or_default();
    Ok((r.header, manifest))
}

/// Table and column names kokoro's migrations use: lowercase, digits, `_`.
/// Anything else in a backup is refused before it reaches SQL.
pub fn valid_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The backups in `dir`, newest first (by name: they are named by time).
pub fn list(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("kokoro-") && n.ends_with(".backup.gz"))
        })
        .collect();
    found.sort();
    found.reverse();
    found
}

/// A backup's file name for a moment: sorts by time.
pub fn file_name(at_ms: i64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(at_ms).unwrap_or_default();
    format!("kokoro-{}.backup.gz", t.format("%Y%m%dT%H%M%S%.3fZ"))
}

/// Deletes all but the newest `keep` backups in `dir`; how many went.
pub fn prune(dir: &Path, keep: usize) -> usize {
    list(dir)
        .into_iter()
        .skip(keep)
        .filter(|p| std::fs::remove_file(p).is_ok())
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn header() -> Header {
        Header {
            kokoro_backup: FORMAT,
            created_ms: 1,
            kokoro_version: "test".into(),
            schema_version: 9,
            backend: "sqlite".into(),
        }
    }

    async fn write(path: &Path) -> Manifest {
        let w = BackupWriter::create(path, &header()).unwrap();
        w.table("users", vec!["user_id".into(), "name".into()])
            .await
            .unwrap();
        w.row(vec![json!(1), json!("ayla")]).await.unwrap();
        w.row(vec![json!(2), Value::Null]).await.unwrap();
        w.table("empty", vec!["x".into()]).await.unwrap();
        w.finish().await.unwrap()
    }

    #[tokio::test]
    async fn a_backup_reads_back_and_a_damaged_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.backup.gz");
        let manifest = write(&path).await;
        assert_eq!(manifest.rows["users"], 2);
        assert_eq!(manifest.rows["empty"], 0);
        assert!(!part_path(&path).exists(), "sealed under its final name");
        let (h, m) = check_file(&path).unwrap();
        assert_eq!((h, m), (header(), manifest));

        // Cut short: no manifest.
        let bytes = std::fs::read(&path).unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text)
            .unwrap();
        let rewrite = |text: &str, name: &str| {
            let p = dir.path().join(name);
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(text.as_bytes()).unwrap();
            std::fs::write(&p, e.finish().unwrap()).unwrap();
            p
        };
        let lines: Vec<&str> = text.lines().collect();
        let cut = rewrite(&(lines[..lines.len() - 1].join("\n") + "\n"), "cut.gz");
        assert!(check_file(&cut)
            .unwrap_err()
            .to_string()
            .contains("before its manifest"));
        // A value changed: the checksum says so.
        let changed = rewrite(&text.replace("ayla", "ayle"), "changed.gz");
        assert!(check_file(&changed)
            .unwrap_err()
            .to_string()
            .contains("checksum"));
        // Not a backup at all.
        std::fs::write(dir.path().join("junk.gz"), b"hello").unwrap();
        assert!(check_file(&dir.path().join("junk.gz")).is_err());
    }

    #[test]
    fn old_backups_are_pruned_newest_kept() {
        let dir = tempfile::tempdir().unwrap();
        for t in [1_000, 2_000, 3_000] {
            std::fs::write(dir.path().join(file_name(t)), b"x").unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        assert_eq!(prune(dir.path(), 2), 1);
        let left = list(dir.path());
        assert_eq!(left.len(), 2);
        assert!(left[0].ends_with(file_name(3_000)));
        assert!(dir.path().join("notes.txt").exists());
    }
}
