//! Input images players upload for workflows that take one (upscale, image
//! to video). A file is checked by its content, not its name: PNG, JPEG or
//! WebP, at most `MAX_BYTES`, between `MIN_SIDE` and `MAX_SIDE` pixels a
//! side. It is kept under the data dir as `uploads/{guild}/{user}/{id}`,
//! so a player can only ever use their own, and pruned after the
//! retention time.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::ids::UserKey;

/// Largest upload accepted (Telegram's own download limit is 20 MB).
pub const MAX_BYTES: usize = 20 * 1024 * 1024;
/// How long an upload is kept.
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);
/// Sides accepted, in pixels.
pub const MIN_SIDE: usize = 64;
pub const MAX_SIDE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Png,
    Jpeg,
    Webp,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpg",
            Self::Webp => "webp",
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Webp => "image/webp",
        }
    }

    /// The format a file's first bytes say it is.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        match imagesize::image_type(bytes).ok()? {
            imagesize::ImageType::Png => Some(Self::Png),
            imagesize::ImageType::Jpeg => Some(Self::Jpeg),
            imagesize::ImageType::Webp => Some(Self::Webp),
            _ => None,
        }
    }
}

/// Why an upload is refused: each in words fit for the player.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UploadError {
    #[error("the file is empty")]
    Empty,
    #[error("the file is larger than {} MB", MAX_BYTES / (1024 * 1024))]
    TooLarge,
    #[error("the file is not a PNG, JPEG or WebP picture")]
    NotAPicture,
    #[error("the picture is {width}×{height}; each side must be {MIN_SIDE} to {MAX_SIDE} pixels")]
    BadSize { width: usize, height: usize },
    #[error("the picture could not be kept; try again")]
    Storage,
}

/// A checked upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub id: String,
    pub format: Format,
    pub width: usize,
    pub height: usize,
}

/// Checks a picture by its content.
pub fn check(bytes: &[u8]) -> Result<(Format, usize, usize), UploadError> {
    if bytes.is_empty() {
        return Err(UploadError::Empty);
    }
    if bytes.len() > MAX_BYTES {
        return Err(UploadError::TooLarge);
    }
    let format = Format::sniff(bytes).ok_or(UploadError::NotAPicture)?;
    let size = imagesize::blob_size(bytes).map_err(|_| UploadError::NotAPicture)?;
    let (width, height) = (size.width, size.height);
    if !(MIN_SIDE..=MAX_SIDE).contains(&width) || !(MIN_SIDE..=MAX_SIDE).contains(&height) {
        return Err(UploadError::BadSize { width, height });
    }
    Ok((format, width, height))
}

pub use crate::ids::valid_upload_id as valid_id;

/// Where uploads are kept.
#[derive(Debug, Clone)]
pub struct Uploads {
    dir: PathBuf,
}

impl Uploads {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn player_dir(&self, key: UserKey) -> PathBuf {
        self.dir
            .join(key.guild.get().to_string())
            .join(key.user.get().to_string())
    }

    /// Checks and keeps a player's picture.
    pub async fn store(&self, key: UserKey, bytes: &[u8]) -> Result<Upload, UploadError> {
        let (format, width, height) = check(bytes)?;
        let id = format!("u{:032x}", rand::random::<u128>());
        let dir = self.player_dir(key);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|_| UploadError::Storage)?;
        // Written beside, then renamed: a half-written file is never seen.
        let tmp = dir.join(format!("{id}.part"));
        tokio::fs::write(&tmp, bytes)
            .await
            .map_err(|_| UploadError::Storage)?;
        tokio::fs::rename(&tmp, dir.join(&id))
            .await
            .map_err(|_| UploadError::Storage)?;
        Ok(Upload {
            id,
            format,
            width,
            height,
        })
    }

    /// The player's upload `id`, if it is still kept.
    pub fn path(&self, key: UserKey, id: &str) -> Option<PathBuf> {
        if !valid_id(id) {
            return None;
        }
        let p = self.player_dir(key).join(id);
        p.is_file().then_some(p)
    }

    /// Deletes uploads older than `keep`; returns how many.
    pub fn prune(&self, keep: Duration) -> usize {
        prune_files(&self.dir, keep)
    }
}

/// Deletes the files under `dir` (two levels down at most) last written
/// longer than `keep` ago; returns how many. Kept files (uploads, results)
/// are written once, so their age is their last write.
pub fn prune_files(dir: &Path, keep: Duration) -> usize {
    let Some(cutoff) = SystemTime::now().checked_sub(keep) else {
        return 0;
    };
    prune_dir(dir, cutoff, 0)
}

fn prune_dir(dir: &Path, cutoff: SystemTime, depth: usize) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut gone = 0;
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() && depth < 2 {
            gone += prune_dir(&p, cutoff, depth + 1);
        } else if p.is_file()
            && e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < cutoff)
            && std::fs::remove_file(&p).is_ok()
        {
            gone += 1;
        }
    }
    gone
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PNG header of `w`×`h` (enough for its size to be read).
    pub fn png(w: u32, h: u32) -> Vec<u8> {
        let mut v = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        v.extend(w.to_be_bytes());
        v.extend(h.to_be_bytes());
        v.extend([8, 2, 0, 0, 0, 0, 0, 0, 0]);
        v
    }

    #[test]
    fn pictures_are_checked_by_content() {
        assert_eq!(check(&png(512, 256)), Ok((Format::Png, 512, 256)));
        assert_eq!(check(b"GIF89a......"), Err(UploadError::NotAPicture));
        assert_eq!(check(b"#!/bin/sh\nrm -rf /"), Err(UploadError::NotAPicture));
        assert_eq!(check(&[]), Err(UploadError::Empty));
        assert_eq!(
            check(&png(8000, 100)),
            Err(UploadError::BadSize {
                width: 8000,
                height: 100
            })
        );
        assert_eq!(check(&vec![0u8; MAX_BYTES + 1]), Err(UploadError::TooLarge));
    }

    #[tokio::test]
    async fn a_player_reaches_only_their_own_uploads() {
        let dir = tempfile::tempdir().unwrap();
        let uploads = Uploads::new(dir.path());
        let key = |u| {
            UserKey::new(
                crate::ids::GuildId::new(1).unwrap(),
                crate::ids::UserId::new(u).unwrap(),
            )
        };
        let up = uploads.store(key(1), &png(128, 128)).await.unwrap();
        assert!(uploads.path(key(1), &up.id).is_some());
        assert!(uploads.path(key(2), &up.id).is_none(), "another player's");
        assert!(uploads.path(key(1), "../../etc/passwd").is_none());
        assert_eq!(
            uploads.prune(Duration::from_secs(3600)),
            0,
            "kept while fresh"
        );
        assert_eq!(uploads.prune(Duration::ZERO), 1);
        assert!(uploads.path(key(1), &up.id).is_none(), "pruned");
    }
}
