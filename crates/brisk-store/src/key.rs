//! The one key and path validation of every store: applied before anything is read, written
//! or removed, so that no key can name anything outside its store.

use crate::error::{Result, StoreError, shown};

/// The longest key a store accepts, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// The marker in the names of the temporary files of atomic writes: never a key's segment.
pub(crate) const TEMP_MARK: &str = ".brisk-tmp-";

/// The marker in the names of staged trees (an array written aside before it is swapped in).
pub const STAGE_MARK: &str = ".brisk-stage-";

fn bad(key: &str, reason: &'static str) -> Result<()> {
    Err(StoreError::BadKey {
        key: shown(key),
        reason,
    })
}

/// The rules every key and path follows: relative, no control character (NUL included), no
/// backslash, no empty, `.` or `..` segment, and no segment that names the storage layer's
/// own temporary or staged files.
fn check(key: &str) -> Result<()> {
    if key.starts_with('/') {
        return bad(key, "it is absolute (starts with `/`)");
    }
    if key.chars().any(char::is_control) {
        return bad(key, "it contains a control character");
    }
    if key.contains('\\') {
        return bad(key, "it contains a backslash");
    }
    if key.len() > MAX_KEY_LEN {
        return bad(key, "it is longer than 1024 bytes");
    }
    for segment in key.split('/') {
        match segment {
            "" => return bad(key, "it has an empty segment (`//` or a trailing `/`)"),
            "." | ".." => return bad(key, "it has a `.` or `..` segment"),
            s if s.contains(TEMP_MARK) || s.contains(STAGE_MARK) => {
                return bad(key, "a segment names the store's temporary files");
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks a key of a key→bytes [`Store`](crate::Store): non-empty, relative, `/`-separated
/// segments that are non-empty, not `.` or `..`, do not start with `.` (reserved for the
/// stores' own files), and contain no backslash or control character (NUL included). A key
/// that passes can never name a path outside a directory store's root.
///
/// # Errors
/// [`StoreError::BadKey`] saying what is wrong.
pub fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return bad(key, "it is empty");
    }
    check(key)?;
    if key.split('/').any(|s| s.starts_with('.')) {
        return bad(
            key,
            "a segment starts with `.` (reserved for the store's own files)",
        );
    }
    Ok(())
}

/// Checks a node path inside a store (a Zarr group or array, `""` for the root), after
/// leading and trailing `/` are trimmed: the rules of [`validate_key`] except that the path may
/// be empty and segments may start with `.` (Zarr v2's `.zarray`). Returns the trimmed path.
///
/// # Errors
/// [`StoreError::BadKey`] saying what is wrong (`..` segments, NUL, backslashes, …).
pub fn validate_path(path: &str) -> Result<&str> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(trimmed);
    }
    check(trimmed).map_err(|e| match e {
        StoreError::BadKey { reason, .. } => StoreError::BadKey {
            key: shown(path),
            reason,
        },
        other => other,
    })?;
    Ok(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_could_leave_the_store_are_refused() {
        for bad in [
            "", "/abs", "a/../b", "..", "a/.", "a//b", "a/", "a\\b", "a\0b", ".hidden", "a/.h",
        ] {
            assert!(validate_key(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["a", "a/b", "double/3d00", "x-y_z.json"] {
            validate_key(good).unwrap();
        }
    }

    #[test]
    fn paths_allow_the_root_and_dot_files_but_never_parent_segments() {
        assert_eq!(validate_path("/").unwrap(), "");
        assert_eq!(validate_path("/a/b/").unwrap(), "a/b");
        assert_eq!(validate_path("a/.zarray").unwrap(), "a/.zarray");
        for bad in [
            "..",
            "../victim",
            "/a/../../b",
            "a/./b",
            "a\0",
            "a/.x.brisk-tmp-1",
        ] {
            let err = validate_path(bad).unwrap_err();
            assert!(err.is_bad_key(), "{bad:?}: {err}");
        }
    }
}
