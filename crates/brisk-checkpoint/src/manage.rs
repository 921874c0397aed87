//! Managing a long-lived checkpoint store: list its entries, verify every one, remove entries
//! by predicate or age, and show one as JSON. The `brisk-checkpoint` command (feature `cli`)
//! does the same from a shell.

use std::time::{Duration, SystemTime};

use brisk_store::Store;

use crate::codec::Encoder;
use crate::error::{CheckpointError, Result};

/// One checkpoint entry of a store.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EntryInfo {
    /// Its storage key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was written, where the store records it.
    pub written: Option<SystemTime>,
    /// Its outer format, read from its first bytes: `zstd` (a zstd frame), `crc32` (Brisk's
    /// integrity header on an uncompressed, unencrypted entry), or `other` (encrypted, or
    /// not written by Brisk).
    pub format: &'static str,
}

/// The outer format of an entry, from its first bytes.
fn format_of(head: &[u8]) -> &'static str {
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        "zstd"
    } else if head.starts_with(b"BRISK\x01") {
        "crc32"
    } else {
        "other"
    }
}

/// The checkpoint entries under `prefix` (`""` for all), sorted by key; the storage's own
/// records (`_brisk/…`) are left out. Reads each value once (its first bytes tell the format).
///
/// # Errors
/// Store errors.
pub fn entries(store: &dyn Store, prefix: &str) -> Result<Vec<EntryInfo>> {
    let mut out = Vec::new();
    each_entry(store, prefix, |e, _| {
        out.push(e);
        Ok(())
    })?;
    Ok(out)
}

/// Calls `visit` with every checkpoint entry under `prefix` and its bytes, each value read
/// once.
fn each_entry(
    store: &dyn Store,
    prefix: &str,
    mut visit: impl FnMut(EntryInfo, Vec<u8>) -> Result<()>,
) -> Result<()> {
    for e in store.list_entries(prefix)? {
        if e.key.starts_with("_brisk/") {
            continue;
        }
        let Some(bytes) = store.get(&e.key)? else {
            continue; // removed since it was listed
        };
        let info = EntryInfo {
            format: format_of(&bytes),
            key: e.key,
            size: e.size,
            written: e.written,
        };
        visit(info, bytes)?;
    }
    Ok(())
}

/// What [`verify`] found.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Verified {
    /// Entries checked.
    pub checked: usize,
    /// Entries that failed, with why (integrity, decryption or format).
    pub failed: Vec<(String, CheckpointError)>,
}

/// Checks every entry under `prefix` with `encoder`: its integrity check (zstd checksum,
/// AES-GCM tag or CRC-32) and that its serialized form parses. Nothing is changed.
///
/// # Errors
/// Store errors (a bad entry is reported in [`Verified::failed`], not as an error).
pub fn verify(store: &dyn Store, encoder: &Encoder, prefix: &str) -> Result<Verified> {
    let mut report = Verified::default();
    each_entry(store, prefix, |e, bytes| {
        report.checked += 1;
        if let Err(err) = encoder.decode_untyped(&bytes, &e.key) {
            report.failed.push((e.key, err));
        }
        Ok(())
    })?;
    Ok(report)
}

/// Removes the entries under `prefix` for which `remove` returns true; returns their keys.
///
/// # Errors
/// Store errors (entries removed before the error stay removed).
pub fn remove_where(
    store: &dyn Store,
    prefix: &str,
    mut remove: impl FnMut(&EntryInfo) -> bool,
) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for e in entries(store, prefix)? {
        if remove(&e) {
            store.delete(&e.key)?;
            removed.push(e.key);
        }
    }
    Ok(removed)
}

/// Removes the entries under `prefix` written more than `age` ago (entries whose store does
/// not record a time are kept); returns their keys.
///
/// # Errors
/// Store errors.
pub fn remove_older_than(store: &dyn Store, prefix: &str, age: Duration) -> Result<Vec<String>> {
    remove_where(store, prefix, older_than(age))
}

/// Whether an entry was written more than `age` ago (from now); entries whose store does not
/// record a time are not.
pub fn older_than(age: Duration) -> impl Fn(&EntryInfo) -> bool {
    let now = SystemTime::now();
    move |e| {
        e.written
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|a| a > age)
    }
}

/// The entry at `key` decoded with `encoder` into JSON (see [`Encoder::decode_untyped`]).
///
/// # Errors
/// [`CheckpointError::Missing`] when there is no such entry; decode errors.
pub fn show(store: &dyn Store, encoder: &Encoder, key: &str) -> Result<serde_json::Value> {
    let bytes = store.get(key)?.ok_or_else(|| CheckpointError::Missing {
        key: crate::error::shown(key),
    })?;
    encoder.decode_untyped(&bytes, key)
}
