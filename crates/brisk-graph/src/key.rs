//! Task keys: `name/` + 32 lowercase hex characters (128 bits of BLAKE3).

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::Arc;

use crate::token::Token;

/// A cheaply clonable name (of a task, or the prefix of a key).
#[derive(Clone)]
pub struct Name(NameRepr);

/// Two words: a shared name is a thin pointer (`Arc<String>`), so the enum fits in the
/// `&'static str`'s niche and every node carries 16 bytes per name, not 24.
#[derive(Clone)]
enum NameRepr {
    Static(&'static str),
    Shared(Arc<String>),
}

impl Name {
    /// A name from a string literal (no allocation).
    #[must_use]
    pub const fn from_static(s: &'static str) -> Self {
        Self(NameRepr::Static(s))
    }

    /// The name as a string slice.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match &self.0 {
            NameRepr::Static(s) => s,
            NameRepr::Shared(s) => s,
        }
    }

    /// This name made safe for use as a key prefix: `/`, `\` and control characters become `_`
    /// and an empty name becomes `task`, so a key always has exactly one `/`.
    #[must_use]
    pub(crate) fn key_safe(&self) -> Self {
        let s = self.as_str();
        if !s.is_empty() && !s.chars().any(bad_key_char) {
            return self.clone();
        }
        if s.is_empty() {
            return Self::from_static("task");
        }
        let fixed: String = s
            .chars()
            .map(|c| if bad_key_char(c) { '_' } else { c })
            .collect();
        Self::from(fixed)
    }
}

fn bad_key_char(c: char) -> bool {
    c == '/' || c == '\\' || c.is_control()
}

impl From<&'static str> for Name {
    fn from(s: &'static str) -> Self {
        Self::from_static(s)
    }
}
impl From<String> for Name {
    fn from(s: String) -> Self {
        Self(NameRepr::Shared(Arc::new(s)))
    }
}
impl From<Arc<str>> for Name {
    fn from(s: Arc<str>) -> Self {
        Self::from(String::from(&*s))
    }
}
impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}
impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}
impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}
impl Eq for Name {}
impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Name {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}
impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}
impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}
impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The identity of a node in a task graph: a name prefix and a 128-bit token.
///
/// Its text form is `name/` followed by 32 lowercase hexadecimal characters, e.g.
/// `double/3d00a6e20b85ee3517c62a761f774f72`. For pure tasks the token is a content address
/// (equal inputs give equal keys, on every run, process and platform); impure tasks get a
/// fresh token per call.
///
/// ```
/// use brisk_graph::Key;
/// let k: Key = "double/3d00a6e20b85ee3517c62a761f774f72".parse().unwrap();
/// assert_eq!(k.name(), "double");
/// assert_eq!(k.to_string(), "double/3d00a6e20b85ee3517c62a761f774f72");
/// assert!("double/xyz".parse::<Key>().is_err());
/// ```
#[derive(Clone)]
pub struct Key {
    name: Name,
    token: Token,
}

impl Key {
    /// A key from a name prefix and a token. `/`, `\` and control characters in the name are
    /// replaced by `_` so the text form stays parseable.
    #[must_use]
    pub fn new(name: impl Into<Name>, token: Token) -> Self {
        Self {
            name: name.into().key_safe(),
            token,
        }
    }

    /// A key from a name that is already key-safe (a spec's prefix, made safe once).
    #[inline]
    pub(crate) fn with_safe_name(name: Name, token: Token) -> Self {
        debug_assert!(
            name.key_safe() == name,
            "`{}` is not key-safe",
            name.as_str()
        );
        Self { name, token }
    }

    /// The name prefix (before the `/`).
    #[must_use]
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// The name prefix as a cheaply clonable [`Name`].
    #[must_use]
    pub fn name_ref(&self) -> &Name {
        &self.name
    }

    /// The 128-bit token (after the `/`).
    #[must_use]
    pub fn token(&self) -> Token {
        self.token
    }

    /// The first 64 bits of the token, a well-mixed value for hash tables.
    pub(crate) fn short(&self) -> u64 {
        let b = self.token.0;
        u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.token == other.token && self.name == other.name
    }
}
impl Eq for Key {}
impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.short());
    }
}
impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Key {
    /// Keys order by name, then token: the order of their text forms.
    fn cmp(&self, other: &Self) -> Ordering {
        self.name
            .cmp(&other.name)
            .then_with(|| self.token.cmp(&other.token))
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.name, self.token.to_hex())
    }
}
impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({self})")
    }
}

/// A string is not a valid key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseKeyError {
    /// There is no `/` between the name and the token.
    #[error("key `{0}` has no `/` separating name and token")]
    MissingSlash(String),
    /// The name prefix is empty or contains a forbidden character.
    #[error("key `{0}` has an empty name or one with `\\` or control characters")]
    BadName(String),
    /// The token is not exactly 32 lowercase hexadecimal characters.
    #[error("key `{0}` does not end in 32 lowercase hex characters")]
    BadToken(String),
}

impl FromStr for Key {
    type Err = ParseKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, hex) = s
            .rsplit_once('/')
            .ok_or_else(|| ParseKeyError::MissingSlash(s.to_owned()))?;
        if name.is_empty() || name.chars().any(bad_key_char) {
            return Err(ParseKeyError::BadName(s.to_owned()));
        }
        let token = parse_hex32(hex).ok_or_else(|| ParseKeyError::BadToken(s.to_owned()))?;
        Ok(Self {
            name: Name::from(name.to_owned()),
            token: Token(token),
        })
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

pub(crate) fn hex32(bytes: &[u8; 16]) -> String {
    let mut s = String::with_capacity(32);
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    s
}

fn parse_hex32(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 32 {
        return None;
    }
    let nib = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (nib(b[2 * i])? << 4) | nib(b[2 * i + 1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_parse_roundtrip() {
        let k = Key::new("a::b", Token([0xab; 16]));
        let text = k.to_string();
        assert_eq!(text, format!("a::b/{}", "ab".repeat(16)));
        assert_eq!(text.parse::<Key>(), Ok(k));
    }

    #[test]
    fn parse_rejects_malformed() {
        for bad in [
            "",
            "noslash",
            "/00000000000000000000000000000000",
            "x/0000000000000000000000000000000",
            "x/000000000000000000000000000000000",
            "x/0000000000000000000000000000000G",
            "x/0000000000000000000000000000000A",
            "a\\b/00000000000000000000000000000000",
        ] {
            assert!(bad.parse::<Key>().is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn slashes_in_names_are_replaced() {
        let k = Key::new(String::from("a/b"), Token([0; 16]));
        assert_eq!(k.name(), "a_b");
        assert_eq!(k.to_string().parse::<Key>(), Ok(k));
    }
}
