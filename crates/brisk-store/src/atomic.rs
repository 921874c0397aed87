//! The one temporary-file scheme of every directory-backed store: a value is written to a
//! hidden temporary sibling, optionally `fsync`ed, and renamed over its target, so a reader
//! sees the old value or the new one, never a part. The temporary files of writers that died
//! are removed by the next writer in the same directory.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::error::BoxError;
use crate::key::{STAGE_MARK, TEMP_MARK};

/// Bytes gathered before a write to a value's file.
const WRITE_BUFFER: usize = 256 << 10;

/// A temporary file this old is dead whoever wrote it (a writer on another host, or one
/// whose liveness cannot be asked).
pub const DEAD_AFTER: Duration = Duration::from_secs(24 * 3600);

static TMP: AtomicU64 = AtomicU64::new(0);

/// This host's name, as written into temporary names (`-` where it cannot be asked).
fn host() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        #[cfg(target_os = "linux")]
        {
            let name = rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned();
            let name: String = name
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
                .collect();
            if !name.is_empty() {
                return name;
            }
        }
        "-".to_owned()
    })
}

/// This process's id, asked once.
fn pid() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// The name of a new temporary file for the file named `name`:
/// `.{name}.brisk-tmp-{host}-{pid}-{n}` (hidden, and unique in this process).
#[must_use]
pub fn temp_name(name: &str) -> String {
    writer_name(name, TEMP_MARK)
}

/// The name of a new staging directory for the tree named `name`:
/// `.{name}.brisk-stage-{host}-{pid}-{n}` (hidden, and unique in this process). A tree is
/// written there whole, then swapped in with [`exchange`].
#[must_use]
pub fn stage_name(name: &str) -> String {
    writer_name(name, STAGE_MARK)
}

/// `.{name}{mark}{host}-{pid}-{n}`: a hidden name that says which writer made it (what
/// [`is_dead`] reads back), unique in this process.
fn writer_name(name: &str, mark: &str) -> String {
    let n = TMP.fetch_add(1, Ordering::Relaxed);
    format!(".{name}{mark}{}-{}-{n}", host(), pid())
}

/// Removes the staging trees of dead writers directly in `dir` (see [`stage_name`]); returns
/// how many.
///
/// # Errors
/// Listing `dir` or removing a tree failed.
pub fn clean_dead_stages(dir: &Path) -> std::io::Result<usize> {
    clean_dead(dir, STAGE_MARK, true)
}

/// Removes the hidden files (or, with `trees`, directory trees) directly in `dir` whose names
/// carry `mark` and whose writers are dead; returns how many. A missing directory has none.
fn clean_dead(dir: &Path, mark: &str, trees: bool) -> std::io::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with('.') && name.contains(mark)) {
            continue;
        }
        let meta = entry.metadata()?;
        let kind = if trees { meta.is_dir() } else { meta.is_file() };
        if kind && is_dead(&name, mark, meta.modified().ok()) {
            let gone = if trees {
                std::fs::remove_dir_all(entry.path())
            } else {
                std::fs::remove_file(entry.path())
            };
            match gone {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => removed += 1,
            }
        }
    }
    Ok(removed)
}

/// Whether `name` is the name of a temporary file of this scheme.
#[must_use]
pub fn is_temp(name: &str) -> bool {
    name.starts_with('.') && name.contains(TEMP_MARK)
}

/// Whether the writer of the temporary file `name` (last modified at `modified`) is gone: a
/// process of this host that no longer runs, or any file older than [`DEAD_AFTER`].
fn is_dead(name: &str, mark: &str, modified: Option<SystemTime>) -> bool {
    let old = modified
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .is_some_and(|age| age > DEAD_AFTER);
    if old {
        return true;
    }
    let Some((_, tail)) = name.rsplit_once(mark) else {
        return false;
    };
    let mut parts = tail.rsplitn(3, '-');
    let (Some(_n), Some(pid), Some(writer_host)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    if writer_host != host() || host() == "-" {
        return false;
    }
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    if pid == self::pid() {
        return false;
    }
    process_gone(pid)
}

#[cfg(target_os = "linux")]
fn process_gone(pid: u32) -> bool {
    // `/proc` is this host's process table; without it, nothing is known to be gone.
    Path::new("/proc/self").exists() && !Path::new("/proc").join(pid.to_string()).exists()
}

#[cfg(not(target_os = "linux"))]
fn process_gone(_pid: u32) -> bool {
    false
}

/// Removes the temporary files of dead writers directly in `dir` (not below it); returns how
/// many. A missing directory has none.
///
/// # Errors
/// Listing `dir` or removing a file failed.
pub fn clean_dead_temps(dir: &Path) -> std::io::Result<usize> {
    clean_dead(dir, TEMP_MARK, false)
}

/// Removes every temporary file under `root` (all of them: only for when no writer can be
/// running, e.g. `DirStore::clean`); returns how many.
///
/// # Errors
/// Walking the tree or removing a file failed.
pub fn clean_all_temps(root: &Path) -> std::io::Result<usize> {
    let mut removed = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let ty = entry.file_type()?;
            if ty.is_dir() && !name.starts_with('.') {
                stack.push(entry.path());
            } else if ty.is_file() && is_temp(&name) {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// Writes files atomically under one root: each through a temporary sibling and a rename.
/// Remembers the directories it has created or seen, so a write does not ask the file system
/// again; the first time it meets a directory, it removes the temporary files that dead
/// writers left there.
#[derive(Debug)]
pub struct AtomicWriter {
    durable: bool,
    dirs: Mutex<HashSet<PathBuf>>,
}

impl AtomicWriter {
    /// A writer; `durable` `fsync`s each file before its rename and the directory after it.
    #[must_use]
    pub fn new(durable: bool) -> Self {
        Self {
            durable,
            dirs: Mutex::default(),
        }
    }

    /// Whether writes are `fsync`ed.
    #[must_use]
    pub fn durable(&self) -> bool {
        self.durable
    }

    /// Replaces the file at `path` with `value`.
    ///
    /// # Errors
    /// The I/O error; the temporary file is removed.
    pub fn write(&self, path: &Path, value: &[u8]) -> std::io::Result<()> {
        self.write_with(path, |w| {
            w.write_all(value)?;
            Ok(true)
        })
        .map_err(|e| match e.downcast::<std::io::Error>() {
            Ok(io) => *io,
            Err(other) => std::io::Error::other(other),
        })
    }

    /// Replaces the file at `path` with what `fill` writes. When `fill` returns `false`, the
    /// value is dropped unwritten and any file at `path` removed (a Zarr chunk that holds
    /// only the fill value).
    ///
    /// # Errors
    /// `fill`'s error, or the I/O error; the temporary file is removed either way.
    pub fn write_with(
        &self,
        path: &Path,
        fill: impl FnOnce(&mut dyn std::io::Write) -> Result<bool, BoxError>,
    ) -> Result<(), BoxError> {
        let dir = path.parent().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "a path without a parent")
        })?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let tmp = dir.join(temp_name(&name));
        let result = (|| -> Result<(), BoxError> {
            let file = self.create(dir, &tmp)?;
            // Encoders hand over small pieces: write them in big ones.
            let mut file = std::io::BufWriter::with_capacity(WRITE_BUFFER, file);
            if !fill(&mut file)? {
                drop(file.into_parts());
                std::fs::remove_file(&tmp)?;
                return match std::fs::remove_file(path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
                    _ => Ok(()),
                };
            }
            let file = file
                .into_inner()
                .map_err(std::io::IntoInnerError::into_error)?;
            if self.durable {
                file.sync_all()?;
            }
            drop(file);
            std::fs::rename(&tmp, path)?;
            if self.durable {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Creates `tmp` in `dir`, creating `dir` first (and removing dead writers' temporary
    /// files from it) if this writer has not seen it yet or it has gone.
    fn create(&self, dir: &Path, tmp: &Path) -> std::io::Result<std::fs::File> {
        let known = self.dirs.lock().is_ok_and(|d| d.contains(dir));
        if !known {
            std::fs::create_dir_all(dir)?;
            // Best effort: a temporary file that cannot be removed now is met again by the
            // next writer, and never read as a value.
            let _ = clean_dead_temps(dir);
        }
        let file = match std::fs::File::create(tmp) {
            Err(e) if known && e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir)?;
                std::fs::File::create(tmp)?
            }
            other => other?,
        };
        if !known && let Ok(mut d) = self.dirs.lock() {
            d.insert(dir.to_path_buf());
        }
        Ok(file)
    }

    /// Forgets the directories seen at or below `root` (after that tree was removed or
    /// moved), so that a later write there creates them again instead of trusting them.
    pub fn forget_under(&self, root: &Path) {
        if let Ok(mut d) = self.dirs.lock() {
            d.retain(|dir| !dir.starts_with(root));
        }
    }
}

/// Exchanges the directory trees at `a` and `b` atomically where the platform can (Linux's
/// `renameat2(RENAME_EXCHANGE)`): at every instant each path names one complete tree.
/// Elsewhere (or where the file system refuses), `b` is moved aside, `a` renamed to `b`, and the
/// old `b` renamed to `a`: a crash between the renames leaves the old tree at the path
/// [`swap_aside`] returns, never removed.
///
/// # Errors
/// A rename failed (nothing was exchanged, or the old tree is at its aside path).
pub fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        match renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE) {
            Ok(()) => return Ok(()),
            Err(e)
                if e == rustix::io::Errno::INVAL
                    || e == rustix::io::Errno::NOSYS
                    || e == rustix::io::Errno::OPNOTSUPP => {}
            Err(e) => return Err(e.into()),
        }
    }
    let aside = swap_aside(b);
    std::fs::rename(b, &aside)?;
    if let Err(e) = std::fs::rename(a, b) {
        // Put the old tree back.
        let _ = std::fs::rename(&aside, b);
        return Err(e);
    }
    std::fs::rename(&aside, a)
}

/// Where [`exchange`]'s fallback keeps the old tree of `b` while it swaps.
#[must_use]
pub fn swap_aside(b: &Path) -> PathBuf {
    let name = b
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    b.with_file_name(format!(".{name}.brisk-stage-aside"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_files_of_dead_writers_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let ours = dir.path().join(temp_name("a"));
        std::fs::write(&ours, b"live").unwrap();
        // A process of this host that cannot exist (pids are below 2^22 on Linux).
        let dead = dir
            .path()
            .join(format!(".b{TEMP_MARK}{}-4294967294-0", host()));
        std::fs::write(&dead, b"dead").unwrap();
        // Another host's writer, recent: its liveness cannot be asked, so it stays.
        let other = dir.path().join(format!(".c{TEMP_MARK}elsewhere-1-0"));
        std::fs::write(&other, b"?").unwrap();
        std::fs::write(dir.path().join("value"), b"v").unwrap();
        let removed = clean_dead_temps(dir.path()).unwrap();
        if cfg!(target_os = "linux") {
            assert_eq!(removed, 1);
            assert!(!dead.exists());
        }
        assert!(ours.exists() && other.exists());
        assert!(dir.path().join("value").exists());
    }

    #[test]
    fn the_next_writer_in_a_directory_removes_dead_temps() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir
            .path()
            .join(format!(".x{TEMP_MARK}{}-4294967294-7", host()));
        std::fs::write(&dead, b"half").unwrap();
        let w = AtomicWriter::new(false);
        w.write(&dir.path().join("x"), b"whole").unwrap();
        assert_eq!(std::fs::read(dir.path().join("x")).unwrap(), b"whole");
        if cfg!(target_os = "linux") {
            assert!(!dead.exists(), "the dead writer's temp file is left");
        }
    }

    #[test]
    fn staging_trees_of_dead_writers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join(stage_name("a"));
        std::fs::create_dir_all(live.join("c")).unwrap();
        let dead = dir
            .path()
            .join(format!(".a{STAGE_MARK}{}-4294967294-3", host()));
        std::fs::create_dir_all(dead.join("c")).unwrap();
        std::fs::write(dead.join("c/0"), b"x").unwrap();
        let removed = clean_dead_stages(dir.path()).unwrap();
        if cfg!(target_os = "linux") {
            assert_eq!(removed, 1);
            assert!(!dead.exists());
        }
        assert!(live.exists());
    }

    #[test]
    fn exchange_swaps_two_trees() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(a.join("in")).unwrap();
        std::fs::write(a.join("in/f"), b"new").unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(b.join("g"), b"old").unwrap();
        exchange(&a, &b).unwrap();
        assert_eq!(std::fs::read(b.join("in/f")).unwrap(), b"new");
        assert_eq!(std::fs::read(a.join("g")).unwrap(), b"old");
    }
}
